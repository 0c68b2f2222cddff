"""Numbers shared by the data, the Net's input and the photo reader. Imports nothing."""

# MNIST's pixel mean and std (0..1): the normalization the Net is trained and used with.
MNIST_MEAN, MNIST_STD = 0.1307, 0.3081
# An MNIST digit: 28x28 pixels, its longer side 20 px, centred by mass.
SIDE, BOX = 28, 20
CLASS_NAMES = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
# A top probability below this is reported as uncertain, by every reader of digits.
UNCERTAIN_BELOW = 0.7
