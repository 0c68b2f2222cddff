"""The library: one module per job, no command programs (those are in tools/). In data-flow order:

    constants     MNIST's mean and std, the 28x28 side, the uncertainty threshold (imports nothing)
    files         the atomic writer, generated markdown blocks, process checks (standard library)
    cli           what every command line shares: number types, run names, error lines
    mnist         the genuine MNIST onto disk (md5-checked) and into uint8 tensors
    muon          the Muon optimizer
    recipes       Settings and the recipes, as values
    training      train() and resume(): one logged, checkpointed run
    train_cli     train.py's flags into Settings and train()
    runs          a run's id and files (log, CSV, JSON, TensorBoard events)
    checkpoint    every read and write of a .pt file (safe loading, atomic writes)
    image         a photo or scan of a digit made to look like MNIST (no torch)
    digits        the Net's predictions on such digits
    onnx_predict  the same with onnxruntime (no torch)
    export        ONNX and torch.export files of a checkpoint, checked
    explain       receptive fields, feature maps, saliency
    page          the draw-a-digit page
    report        README results and images/ from one finished run
    realworld     the real-world set and its evaluation

Nothing is imported here: `from s5 import onnx_predict` needs no torch.
"""
