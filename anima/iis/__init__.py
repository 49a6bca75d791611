"""The Interactive Intelligence Score (paper 7.7): ``score`` (the formulas, pure Python), ``radar``
(the plot), ``ssim`` (the renderer's image metric), ``training.measure`` (runs each module's own
evaluation, training-side), ``cli`` (``anima eval iis`` and ``anima eval characterbox``). See docs/iis.md."""
