"""The library behind train.py and predict.py, one module per job, in data-flow order:

    mnist        the genuine MNIST onto disk (md5-checked) and into uint8 tensors
    muon         the Muon optimizer of the default recipe
    training     the recipes and the run loop (train.py is its command line)
    runs         a run's id and files (logs/<run-id>.*, its TensorBoard events), and the README blocks written from runs
    checkpoint   every read and write of a .pt file (safe loading, atomic writes)
    image        a photo or scan of a digit made to look like MNIST (numpy, Pillow, OpenCV; no torch)
    digits       predictions on such digits, and image files as tensors
    explain      receptive fields, feature maps, saliency

and the other command lines, each `python -m s5.<name> --help` from the repository root:

    report       README results and images/ from one finished run (`make report`)
    bench        speed and accuracy of the recipes (`make bench`)
    export       ONNX and torch.export files of a checkpoint
    onnx_predict predictions from an ONNX file with onnxruntime (files read by image), no torch
    realworld    the real-world set (handwriting fonts and scans) and its evaluation (`make eval-real`)
    app          the draw-a-digit page (`make app`)
    tune         Optuna searches of a recipe's settings on the validation split (`make tune`)
    study        a study rendered into docs/studies/<study>.md and .png
    experiments  docs/experiments.md from the tuning runs' own files
    gpu_checks, profile_gpu_step   checks and profile on a CUDA GPU

Nothing is imported here: `from s5 import onnx_predict` needs no torch.
"""
