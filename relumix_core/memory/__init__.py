"""How much GPU memory and compute a run needs, found without a GPU: the real code path on the meta device.

:mod:`.tracker` counts the bytes of live device tensors after every operation, :mod:`.attention` makes attention
count as the GPU's fused kernels do, :mod:`.simulate` runs a clip through :class:`~relumix_core.ReLumixPipeline`
with the run's settings and adds the weights that each stage keeps resident, and :mod:`.search` finds settings that
fit a memory budget. ``relumix plan`` is the command line over it; docs/memory.md says what it leaves out.
"""
