// ops.h: the differentiable op set, the API that layers/ and the loss use.
//
// Each op checks its arguments, allocates its output on the input's device,
// runs the device kernel (engine/kernels.h) and, when an input requires a
// gradient, records its backward on the tape (engine/autograd.h). The
// forward and the backward of an op sit together in engine/ops/<op>.cpp.
// All ops accept float32 and float64 on the CPU.
#pragma once
// One op, three files and a page: engine/ops/<op>.h and .cpp (the op and
// its backward), engine/cpu/<op>.cpp (the reference kernels),
// engine/cuda/<op>.cu, docs/layers/<op>.md. This header includes them all.
#include "engine/ops/amp.h"
#include "engine/ops/batch_norm.h"
#include "engine/ops/conv2d.h"
#include "engine/ops/elementwise.h"
#include "engine/ops/input.h"
#include "engine/ops/linear.h"
#include "engine/ops/loss.h"
#include "engine/ops/pool.h"
#include "engine/ops/rnn.h"
