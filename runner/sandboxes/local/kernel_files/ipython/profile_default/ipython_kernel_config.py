# Sandpit's Python kernel configuration (read-only inside the sandbox at /opt/sandpit/ipython).
c = get_config()  # noqa: F821
# No history database and no output cache: both keep every result in kernel memory.
c.HistoryManager.enabled = False
c.InteractiveShell.cache_size = 0
# Plain tracebacks: they are stored and shown as text.
c.InteractiveShell.colors = "nocolor"
c.InteractiveShell.xmode = "Context"
# Render open figures after each cell (the inline backend).
c.InlineBackend.close_figures = True
