"""nbgrader's configuration for this course (read by `nbgrader` run from the repository root).

The course directory is built under build/ by tools/labs.py (`make student`, `make grade`):
  build/course/source/labs/      the instructor notebooks, copied from notebooks/
  build/course/release/labs/     the student versions (solutions and hidden tests removed, outputs cleared)
  build/course/submitted/<student>/labs/   submissions to mark
  build/course/autograded/<student>/labs/  the executed, marked submissions
  build/course/gradebook.db      nbgrader's sqlite gradebook
"""

import os
from pathlib import Path

c = get_config()  # noqa: F821 (provided by traitlets when it loads this file)

c.CourseDirectory.course_id = "spikelib"
c.CourseDirectory.root = os.environ.get("LABS_COURSE_DIR", str(Path(__file__).resolve().parent / "build" / "course"))

# A solution region becomes this stub; it sits inside a function body, so the cell still runs.
c.ClearSolutions.code_stub = {"python": "# YOUR CODE HERE\nraise NotImplementedError()"}
c.ClearSolutions.text_stub = "YOUR ANSWER HERE"
c.ClearSolutions.enforce_metadata = True

# ClearSolutions, ClearHiddenTests and ClearOutput are in GenerateAssignment's default preprocessors:
# the student versions are handed out with no solutions, no hidden tests and no outputs.

# Marking runs every notebook top to bottom; the training notebooks need minutes, not nbgrader's 30 s per cell.
c.Execute.timeout = 1800
c.Execute.interrupt_on_timeout = True
c.Autograde.create_student = True
