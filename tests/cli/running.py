"""Running a command's `main(argv)` in the test's process, as its console script would."""


def exit_status(main, argv):
  """`main(argv)`'s exit status, whether returned or raised (argparse raises SystemExit for bad flags)."""
  try:
    return main(argv)
  except SystemExit as e:
    return e.code


def only_error_line(stderr):
  """The one line of `stderr` that starts with 'error:', after checking there is exactly one."""
  lines = [line for line in stderr.splitlines() if line.startswith('error:')]
  assert len(lines) == 1, stderr
  return lines[0]
