#include "engine/autograd.h"

#include <unordered_map>

#include "engine/kernels.h"
#include "engine/ops/op_util.h"

namespace ich {

namespace {
thread_local bool g_grad_enabled = true;
thread_local LeafReady g_leaf_ready;
}

LeafReadyScope::LeafReadyScope(LeafReady ready) : prev_(std::move(g_leaf_ready)) { g_leaf_ready = std::move(ready); }
LeafReadyScope::~LeafReadyScope() { g_leaf_ready = std::move(prev_); }

bool grad_enabled() { return g_grad_enabled; }
NoGradGuard::NoGradGuard() : prev_(g_grad_enabled) { g_grad_enabled = false; }
NoGradGuard::~NoGradGuard() { g_grad_enabled = prev_; }

bool needs_graph(const std::vector<Tensor>& inputs) {
  if (!g_grad_enabled) return false;
  for (const Tensor& t : inputs)
    if (t.defined() && t.requires_grad()) return true;
  return false;
}

Tensor record(const char* name, Tensor out, const std::vector<Tensor>& inputs, BackwardFn backward) {
  if (!needs_graph(inputs)) return out;
  auto node = std::make_shared<Node>();
  node->name = name;
  for (const Tensor& t : inputs) {
    Edge e;
    const bool need = t.defined() && t.requires_grad();
    if (need) {
      e.shape = t.shape();
      e.dtype = t.dtype();
      if (t.is_leaf())
        e.leaf = t.impl_ptr();
      else
        e.fn = t.grad_fn();
    }
    node->inputs.push_back(std::move(e));
    node->needs.push_back(need);
  }
  node->backward = std::move(backward);
  out.impl().requires_grad = true;
  out.impl().grad_fn = std::move(node);
  return out;
}

namespace {

// out-of-place a + b on a's device
Tensor sum_of(const Tensor& a, const Tensor& b) {
  const Layout L = layout_for(a, true);  // the branches may arrive in different layouts
  Tensor out = L.empty(a.shape(), a);
  ICH_DISPATCH(a.device(), add_forward, L.in(a), L.in(b), out);
  return L.out(out);
}

void accumulate_leaf(TensorImpl& leaf, const Tensor& g) {
  if (!leaf.grad) {
    // A gradient takes its tensor's layout (a channels-last input gets a
    // channels-last gradient). Clone: g may alias a gradient handed to
    // another input (add's backward passes the same tensor to both), and
    // .grad is accumulated in place.
    const Tensor c = g.contiguous(memory_format_of(leaf.shape, leaf.strides));
    leaf.grad = (c.raw_data() == g.raw_data() ? c.clone() : c).impl_ptr();
    return;
  }
  Tensor acc(leaf.grad);
  const Layout L = layout_for(acc, true);
  if (L.kernel == L.op) {
    ICH_DISPATCH(acc.device(), add_inplace, acc, L.in(g));
  } else {  // a channels-last gradient on the CPU: add in N,C,H,W, then lay it back
    Tensor t = L.in(acc);
    ICH_DISPATCH(acc.device(), add_inplace, t, L.in(g));
    acc.copy_(t);
  }
}

}  // namespace

void run_backward(const Tensor& root, const Tensor& gradient, bool retain_graph) {
  ICH_CHECK(root.requires_grad(), "backward: tensor ", root.str(), " does not require grad (no parameter or input with requires_grad led to it)");
  Tensor g0 = gradient;
  if (!g0.defined()) {
    ICH_CHECK(root.numel() == 1, "backward: tensor ", root.str(), " is not a scalar; pass its gradient");
    g0 = Tensor::ones(root.shape(), root.dtype(), root.device());  // filled there: no copy, no wait
  }
  ICH_CHECK(g0.shape() == root.shape(), "backward: gradient ", g0.str(), " does not match ", root.str());
  if (root.is_leaf()) {
    accumulate_leaf(root.impl(), g0);
    if (g_leaf_ready) g_leaf_ready(root.impl_ptr().get());
    return;
  }

  // Count, for each node, how many edges from other reachable nodes point at
  // it: it may run only when all of them have delivered their gradient.
  // With a LeafReady hook, also how many gradients each leaf will receive.
  std::unordered_map<Node*, int> pending;
  std::unordered_map<TensorImpl*, int> leaf_pending;
  const LeafReady ready_hook = g_leaf_ready;
  std::vector<Node*> stack{root.grad_fn().get()};
  pending[root.grad_fn().get()] = 0;
  while (!stack.empty()) {
    Node* n = stack.back();
    stack.pop_back();
    for (size_t i = 0; i < n->inputs.size(); ++i) {
      const Edge& e = n->inputs[i];
      if (ready_hook && e.leaf && n->needs[i]) ++leaf_pending[e.leaf.get()];
      if (!e.fn) continue;
      auto [it, fresh] = pending.try_emplace(e.fn.get(), 0);
      ++it->second;
      if (fresh) stack.push_back(e.fn.get());
    }
  }

  std::unordered_map<Node*, Tensor> grad_of;
  grad_of[root.grad_fn().get()] = g0;
  std::vector<Node*> ready{root.grad_fn().get()};
  while (!ready.empty()) {
    Node* n = ready.back();
    ready.pop_back();
    ICH_CHECK(!n->released, "backward through op '", n->name,
              "' a second time: its saved tensors were freed by the first backward (pass retain_graph to keep them)");
    Tensor g = std::move(grad_of[n]);
    grad_of.erase(n);
    std::vector<Tensor> grads = n->backward(g, n->needs);
    ICH_CHECK(grads.size() == n->inputs.size(), "op '", n->name, "' returned ", grads.size(), " gradients for ",
              n->inputs.size(), " inputs");
    for (size_t i = 0; i < n->inputs.size(); ++i) {
      const Edge& e = n->inputs[i];
      if (!n->needs[i]) continue;
      const Tensor& gi = grads[i];
      ICH_CHECK(gi.defined() && gi.shape() == e.shape && gi.dtype() == e.dtype, "op '", n->name,
                "': gradient of input ", i, " is ", gi.str(), ", expected ", dtype_name(e.dtype), " of shape ",
                shape_str(e.shape));
      if (e.leaf) {
        accumulate_leaf(*e.leaf, gi);
        if (ready_hook && --leaf_pending[e.leaf.get()] == 0) ready_hook(e.leaf.get());
        continue;
      }
      auto it = grad_of.find(e.fn.get());
      if (it == grad_of.end())
        grad_of.emplace(e.fn.get(), gi);
      else
        it->second = sum_of(it->second, gi);  // branches that join add
      if (--pending[e.fn.get()] == 0) ready.push_back(e.fn.get());
    }
    if (!retain_graph) {
      n->backward = nullptr;  // frees the saved activations now
      n->released = true;
    }
  }
}

}  // namespace ich
