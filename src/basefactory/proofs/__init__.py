"""Proofs: what the factory has shown about a wheel or an image, in one model.

A proof names its subject (a wheel file, an image, or for a fit both), its kind, the
digest of the inputs it was made from, its outcome and its evidence. Each kind is kept
where the factory already keeps truth, never in a database of its own:

    wheel-test   a toxresult attached to the wheel's file in devpi        (store_devpi)
    smoke        a label of the image, set before it is pushed             (store_labels)
    abi-audit    a label of the image, set before it is pushed             (store_labels)
    fit          a toxresult attached to the wheel's file in devpi, its
                 subject naming the image's registry digest               (store_devpi)

`read` holds the one reader the catalog and `ls` use for all of them.
"""

from basefactory.proofs.model import SCHEMA, Kind, Proof, Subject

__all__ = ["SCHEMA", "Kind", "Proof", "Subject"]
