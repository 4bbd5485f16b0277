"""A trained model's life after training: how far its inputs drift from the training data, the
confidence threshold below which its signals abstain, its versions and its recorded outcomes."""
