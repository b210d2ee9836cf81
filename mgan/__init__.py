"""mgan: Markovian GANs for texture synthesis and style transfer (Li & Wand, ECCV 2016).

Modules, one idea each (the README lists them all):
    errors         the exceptions a user can cause (one CLI line each)
    vgg            frozen VGG-19 encoder with named taps and Caffe preprocessing; layer facts
    io             image loading/saving with clear errors, atomic writes
    patches        neural patch grids, extraction and gradient blending
    layers         building blocks shared by the networks (DCGAN initialisation)
    discriminator  Markovian patch discriminators (MDAN and MGAN)
    losses         hinge, content, TV, Gram and MRF losses
    metrics        evaluation distances (SWD, Gram distance, checkerboard score)
    optim          image optimisation and coarse-to-fine, shared by the iterative baselines
    mdan           adversarial deconvolution (paper Sec. 3.1), CLI
"""

__version__ = "0.1.0"

import sys as _sys

if _sys.argv[:1] == ["-m"]:
    # `python -m mgan.<cli>` is importing this package to find its module (argv[0] is "-m"
    # only then): the CLI's imports (torch, torchvision) take seconds, and a Ctrl-C in them
    # would print a traceback. Until mgan.cli.run takes over, Ctrl-C ends the process with
    # one line and status 130; nothing has been written yet. Importing mgan as a library
    # installs nothing.
    import os as _os
    import signal as _signal

    def _interrupted_while_starting(signum: int, frame: object) -> None:
        _os.write(2, b"interrupted\n")
        _os._exit(130)

    _signal.signal(_signal.SIGINT, _interrupted_while_starting)
