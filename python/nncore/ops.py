"""The raw dispatch ops of the compiled core, forward and backward (see src/include/nncore/ops.h).

Layers build on these. Parameter gradients are accumulated into the tensors passed in
(``dweight += ...``); every other result is a new tensor.
"""
from ._C import (  # noqa: F401
    adam_step_, argmax_rows, avg_pool2d_backward, avg_pool2d_forward, axpy_, bias_add_,
    bias_grad_, col2im, conv2d_backward, conv2d_forward, conv2d_pool_backward,
    conv2d_pool_forward, cross_entropy_backward,
    cross_entropy_forward, dropout_forward, fill_, fill_tensors_, gemm_, im2col, index_select_rows,
    leaky_relu_backward, leaky_relu_forward, linear_backward, linear_forward,
    log_softmax_backward, log_softmax_forward, matmul, max_pool2d_backward, max_pool2d_forward,
    mse_backward, mse_forward, mul, relu_backward, relu_forward, scale_, sgd_step_,
    sigmoid_backward, sigmoid_forward, softmax_backward, softmax_forward, tanh_backward,
    tanh_forward,
)
