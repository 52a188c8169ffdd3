// Losses: softmax cross-entropy (integer labels or probability targets) and mean squared error.
// The loss is returned as a float32 tensor of shape () so that no host sync is needed per step.
#include "dispatch.h"
#include "nncore/ops.h"

namespace nncore::ops {
using namespace detail;

namespace {

// Validates (logits, target); true when target holds integer labels.
bool check_cross_entropy(const char* op, const Tensor& logits, const Tensor& target) {
  require_float(op, "logits", logits);
  require_rank(op, "logits", logits, 2);
  require_defined(op, "target", target);
  common_device(op, {&logits, &target});
  const int64_t rows = logits.size(0), cols = logits.size(1);
  NNCORE_CHECK(cols > 0, op, ": logits ", shape_str(logits.shape()), " have no classes");
  if (target.dtype() == DType::int32) {
    NNCORE_CHECK(target.shape() == Shape({rows}), op, ": labels ", shape_str(target.shape()),
                 " must be (", rows, ",) for logits ", shape_str(logits.shape()));
    if (target.device() == Device::cpu) {  // on the GPU a bad label turns the loss into NaN
      const int32_t* labels = target.i32();
      for (int64_t r = 0; r < rows; ++r) {
        NNCORE_CHECK(labels[r] >= 0 && labels[r] < cols, op, ": label ", labels[r], " at row ", r,
                     " is out of range for ", cols, " classes");
      }
    }
    return true;
  }
  NNCORE_CHECK(target.shape() == logits.shape(), op, ": probability target ",
               shape_str(target.shape()), " must have the shape of logits ",
               shape_str(logits.shape()),
               target.dim() == 1 ? " (class labels must be int32, not float32)" : "");
  return false;
}

}  // namespace

std::tuple<Tensor, Tensor> cross_entropy_forward(const Tensor& logits, const Tensor& target) {
  const bool labels = check_cross_entropy("cross_entropy", logits, target);
  const int64_t rows = logits.size(0), cols = logits.size(1);
  Tensor loss = Tensor::empty({}, DType::float32, logits.device());
  Tensor probs = Tensor::empty(logits.shape(), DType::float32, logits.device());
  if (labels) {
    NNCORE_DISPATCH(logits.device(), cross_entropy_labels_forward, logits.f32(), target.i32(), rows,
                    cols, probs.f32(), loss.f32());
  } else {
    NNCORE_DISPATCH(logits.device(), cross_entropy_probs_forward, logits.f32(), target.f32(), rows,
                    cols, probs.f32(), loss.f32());
  }
  return {loss, probs};
}

Tensor cross_entropy_backward(const Tensor& probs, const Tensor& target, float grad_scale) {
  const bool labels = check_cross_entropy("cross_entropy_backward", probs, target);
  const int64_t rows = probs.size(0), cols = probs.size(1);
  Tensor dlogits = Tensor::empty(probs.shape(), DType::float32, probs.device());
  const float scale = rows == 0 ? 0.0f : grad_scale / static_cast<float>(rows);
  if (labels) {
    NNCORE_DISPATCH(probs.device(), cross_entropy_labels_backward, probs.f32(), target.i32(), rows,
                    cols, scale, dlogits.f32());
  } else {
    NNCORE_DISPATCH(probs.device(), cross_entropy_probs_backward, probs.f32(), target.f32(), rows,
                    cols, scale, dlogits.f32());
  }
  return dlogits;
}

Tensor mse_forward(const Tensor& pred, const Tensor& target) {
  require_float("mse_loss", "pred", pred);
  require_float("mse_loss", "target", target);
  require_same_shape("mse_loss", "pred", pred, "target", target);
  const Device device = common_device("mse_loss", {&pred, &target});
  Tensor loss = Tensor::empty({}, DType::float32, device);
  NNCORE_DISPATCH(device, mse_forward, pred.f32(), target.f32(), pred.numel(), loss.f32());
  return loss;
}

Tensor mse_backward(const Tensor& pred, const Tensor& target, float grad_scale) {
  require_float("mse_loss_backward", "pred", pred);
  require_float("mse_loss_backward", "target", target);
  require_same_shape("mse_loss_backward", "pred", pred, "target", target);
  const Device device = common_device("mse_loss_backward", {&pred, &target});
  Tensor dpred = Tensor::empty(pred.shape(), DType::float32, device);
  const float scale = pred.numel() == 0 ? 0.0f : grad_scale / static_cast<float>(pred.numel());
  NNCORE_DISPATCH(device, mse_backward, pred.f32(), target.f32(), pred.numel(), scale,
                  dpred.f32());
  return dpred;
}

}  // namespace nncore::ops
