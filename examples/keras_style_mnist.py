"""The course's Keras program, line for line, on nncore:

    model = Sequential([Dense(800, input_dim=784, activation="relu"),
                        Dense(10, activation="softmax")])
    model.compile(loss="categorical_crossentropy", optimizer=SGD(), metrics=["accuracy"])
    model.fit(x_train, y_train, batch_size=200, epochs=..., validation_split=0.2)

The softmax is part of the loss here (CrossEntropyLoss is softmax + cross-entropy, fused and
stable), so the last layer outputs logits. Runs on the embedded MNIST sample when full MNIST
is not available:  python examples/keras_style_mnist.py --epochs 20 [--device cuda]
"""
import argparse

import nncore
from nncore import nn, optim
from nncore.data import load_mnist, one_hot, scale_images

parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
parser.add_argument("--epochs", type=int, default=20)
parser.add_argument("--device", default="auto", help="auto, cpu or cuda")
args = parser.parse_args()
device = ("cuda" if nncore.cuda.is_available() else "cpu") if args.device == "auto" else args.device
nncore.manual_seed(42)

# Data: pixels scaled to [0, 1], images flattened to 784 values, labels one-hot.
(x_train, y_train), (x_test, y_test) = load_mnist(split="train"), load_mnist(split="test")
x_train, x_test = scale_images(x_train, flatten=True), scale_images(x_test, flatten=True)
y_train, y_test = one_hot(y_train, 10), one_hot(y_test, 10)

# The network: Dense(784 -> 800, relu), Dense(800 -> 10, softmax as part of the loss).
model = nn.Sequential(
    nn.Linear(784, 800), nn.ReLU(),
    nn.Linear(800, 10),
)
model.to(device)
print(model)

# Categorical cross-entropy, plain SGD, mini-batches of 200, 20% of the data for validation.
model.fit(x_train, y_train, batch_size=200, epochs=args.epochs, validation_split=0.2,
          optimizer=optim.SGD(model.parameters(), lr=0.1), loss="categorical_crossentropy",
          metrics=["accuracy"], verbose=2)

scores = model.evaluate(x_test, y_test)
print(f"Accuracy on test data: {scores['accuracy'] * 100:.2f}%")
