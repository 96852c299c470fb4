"""The napari plugin (``pip install microdenoise[napari]``): Denoise, Train and Compare
widgets built from the method registry, and the bundled FMD crop as sample data.

npe2 finds the manifest, ``napari.yaml`` in this folder, through the
``napari.manifest`` entry point. Nothing here imports Qt or napari: the widget
modules (:mod:`.denoise_widget`, :mod:`.train_widget`, :mod:`.compare_widget`) do,
and napari imports them only when a widget is opened.
"""
