// autograd.h: reverse-mode automatic differentiation, the tape.
//
// Every differentiable op (engine/ops.h) computes its output, then, when an
// input requires a gradient and grad mode is on, attaches a Node to the
// output. The Node holds a backward closure (the op's chain rule, written
// next to its forward) and one Edge per input: the Node that produced that
// input, or the leaf tensor (a parameter) where gradients are accumulated.
//
// backward() walks the graph from the loss in reverse topological order
// (Kahn's algorithm on dependency counts), so each Node runs once, after every
// consumer of its output has contributed. The rules:
//   - gradients of leaves (parameters) ACCUMULATE into .grad across calls,
//     until zero_grad();
//   - gradients of intermediate tensors are WRITTEN into a per-call buffer;
//   - where a tensor feeds several ops (a residual branch), the contributions
//     ADD in that buffer before its producer runs.
// After a backward the closures are dropped, freeing the saved activations;
// a second backward through the same graph is an error naming the op,
// unless the first passed retain_graph.
#pragma once
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "engine/tensor.h"

namespace ich {

struct Edge {
  std::shared_ptr<Node> fn;           // producer of a non-leaf input, or
  std::shared_ptr<TensorImpl> leaf;   // the leaf input that accumulates
  Shape shape;                        // the input's shape and dtype, to check the gradient
  DType dtype = DType::Float32;       // (a 16-bit activation gets a 16-bit gradient)
};

// needs[i]: whether input i wants a gradient; a backward closure may return
// an undefined Tensor for the inputs that do not.
using NeedsGrad = std::vector<bool>;
using BackwardFn = std::function<std::vector<Tensor>(const Tensor& grad_out, const NeedsGrad& needs)>;

struct Node {
  std::string name;
  std::vector<Edge> inputs;
  NeedsGrad needs;
  BackwardFn backward;  // reset after use unless the graph is retained
  bool released = false;
};

// Whether ops record graph nodes right now (thread-local).
bool grad_enabled();

// Turns graph recording off for its scope: optimizer steps, evaluation.
class NoGradGuard {
 public:
  NoGradGuard();
  ~NoGradGuard();
  NoGradGuard(const NoGradGuard&) = delete;
  NoGradGuard& operator=(const NoGradGuard&) = delete;

 private:
  bool prev_;
};

// True when recording is on and any input requires a gradient.
bool needs_graph(const std::vector<Tensor>& inputs);

// Attaches a Node named `name` to `out` (produced from `inputs`) when
// needs_graph(inputs). The closure must capture what it saves by value, and
// must capture `out` only as out.detach(), or the graph would own itself.
Tensor record(const char* name, Tensor out, const std::vector<Tensor>& inputs, BackwardFn backward);

// Implementation of Tensor::backward.
void run_backward(const Tensor& root, const Tensor& gradient, bool retain_graph);

// While in scope on this thread, backward calls `ready` for each leaf as
// soon as its gradient is complete for that backward (every path into it has
// delivered), in the order backward finishes them: where data-parallel
// training starts the all-reduce of a bucket of gradients while backward
// goes on with the layers before it (DDP's overlap).
using LeafReady = std::function<void(TensorImpl* leaf)>;
class LeafReadyScope {
 public:
  explicit LeafReadyScope(LeafReady ready);
  ~LeafReadyScope();
  LeafReadyScope(const LeafReadyScope&) = delete;
  LeafReadyScope& operator=(const LeafReadyScope&) = delete;

 private:
  LeafReady prev_;
};

}  // namespace ich
