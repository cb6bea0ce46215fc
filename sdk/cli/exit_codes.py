"""The command line's exit statuses, one list (README "CLI" and every ``--help`` epilog quote it)."""

EXIT_OK = 0  #: every input gave a verdict / the command did what it was asked
EXIT_ERROR = 1  #: an error before any input: bundle, runtime, usage of a library call
EXIT_BAD_INPUT = 2  #: bad usage, or no input gave a verdict
EXIT_GATE = 3  #: an export gate failed (the artifacts that passed were written)
EXIT_NONCONFORMING = 4  #: the bundle does not conform on this device (``verify``)
EXIT_SOME_FAILED = 5  #: some inputs failed (each reported), the others gave verdicts
EXIT_BROKEN_PIPE = 141  #: 128 + SIGPIPE, what a shell reports for a tool cut off by ``| head``

DETECT_EPILOG = (f"exit status: {EXIT_OK} every input gave a verdict; {EXIT_SOME_FAILED} some inputs failed (each "
                 f"reported, the rest went on); {EXIT_BAD_INPUT} no input gave a verdict or bad usage; {EXIT_ERROR} "
                 "bundle or runtime error")
