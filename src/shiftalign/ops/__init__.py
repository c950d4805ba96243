"""Pure tensor math shared by losses, trainers and estimators."""
