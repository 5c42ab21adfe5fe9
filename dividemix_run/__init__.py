"""The run machinery behind the training scripts (Train_cifar.py, Train_clothing1M.py, Train_webvision.py,
Train_folder.py); the algorithm itself is dividemix.py, whole, at the repository's root.

    cli           flags, their checks, read-only settings, exit statuses (run_main)
    run           one run's life: build the nets, one epoch of Algorithm 1, the JSON line and checkpoint
    resume        whether and from what a run may resume (settings, labels, device), and what may change
    lock          one run per name (an flock held for the run's life)
    signals       SIGTERM / SIGINT turned into an orderly stop that waits for a checkpoint being saved
    runtime       device, precision, determinism, memory format, compilation
    checkpoints   atomic files, every random stream's state, digests
    logs          the reference's text logs, strict JSON lines, TensorBoard, progress bars
    distributed   torchrun: the process group, GlobalBatchNorm, the multi-process steps of Algorithm 1
    data_sources  the one interface dividemix.py reads batches through, and its implementations
    device_data   uint8 images on the device, crop + flip + normalise in batch there (torch only)
    pretrained    torchvision weights under offline rules; which torchvision models train here
    label_issues  the report of the labels DivideMix doubts
    paper         the paper's settings and results
    noise_rate    --r auto: the noise rate estimated from the two nets' loss mixtures
    plan          --dry_run: the checks that write nothing, and the plan of a run

Nothing here is imported by the copyable files at the root (PreResNet.py, InceptionResNetV2.py,
SmallCNN.py, dividemix.py, the dataloaders), which work copied alone.
"""
