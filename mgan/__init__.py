"""mgan: Markovian GANs for texture synthesis and style transfer (Li & Wand, ECCV 2016).

Modules, one idea each (see README):
    vgg            frozen VGG-19 encoder with named taps and Caffe preprocessing
    io             image loading/saving with clear errors, atomic writes
    patches        neural patch grids, extraction and gradient blending
    discriminator  Markovian patch discriminators (MDAN and MGAN)
    losses         hinge, content, TV, Gram and MRF losses
    mdan           adversarial deconvolution (paper Sec. 3.1), CLI
"""

__version__ = "0.1.0"
