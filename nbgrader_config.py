"""nbgrader's configuration for this course (read by `nbgrader` run from the repository root).

Each notebook notebooks/NN_name.ipynb is the assignment labNN. The course directory
(build/course, or $LABS_COURSE_DIR) is filled by tools/labs.py (`make student`) or by hand:
  build/course/source/labNN/NN_name.ipynb           the instructor notebook
  build/course/release/labNN/NN_name.ipynb          the student version (no solutions, hidden tests, outputs)
  build/course/submitted/<student>/labNN/           a submission to mark
  build/course/autograded/<student>/labNN/          the executed, marked submission
  build/course/gradebook.db                         nbgrader's sqlite gradebook
`make grade` marks each submission in a course directory of its own (tools/labs.py).
"""

import copy
import os
import sys
from pathlib import Path

from nbconvert.preprocessors import ClearMetadataPreprocessor
from nbgrader.api import MissingEntry
from nbgrader.preprocessors import (
    AssignLatePenalties,
    CheckCellMetadata,
    ClearHiddenTests,
    ClearOutput,
    DeduplicateIds,
    IgnorePattern,
    LimitOutput,
    OverwriteCells,
    OverwriteKernelspec,
    SaveAutoGrades,
)

c = get_config()  # noqa: F821 (provided by traitlets when it loads this file)

REPO = Path(__file__).resolve().parent
if str(REPO / "tools") not in sys.path:
    sys.path.insert(0, str(REPO / "tools"))  # tools/ipc_kernel.py, for nbgrader run by hand as well
from ipc_kernel import IpcExecute  # noqa: E402 (found through the line above)

c.CourseDirectory.course_id = "spikelib"
c.CourseDirectory.root = os.environ.get("LABS_COURSE_DIR", str(REPO / "build" / "course"))

# A solution region becomes this stub; it sits inside a function body, so the cell still runs.
c.ClearSolutions.code_stub = {"python": "# YOUR CODE HERE\nraise NotImplementedError()"}
c.ClearSolutions.text_stub = "YOUR ANSWER HERE"
c.ClearSolutions.enforce_metadata = True

# ClearSolutions, ClearHiddenTests and ClearOutput are in GenerateAssignment's default preprocessors:
# the student versions are handed out with no solutions, no hidden tests and no outputs.


class OverwriteCellsAsReleased(OverwriteCells):
    """nbgrader's OverwriteCells, warning about a locked cell only when it differs from its released version.

    The gradebook keeps a check cell's checksum with its hidden tests (taken before
    generate_assignment removes them), so nbgrader warns "checksum ... has changed" for every
    such cell of an untouched student version (jupyter/nbgrader#1961). A cell whose source is
    the released one gets the source version back silently; an edited one is still reported.
    """

    def preprocess_cell(self, cell, resources, cell_index):
        grade_id = cell.metadata.get("nbgrader", {}).get("grade_id")
        if grade_id is not None:
            try:
                source_cell = self.gradebook.find_source_cell(grade_id, self.notebook_id, self.assignment_id)
            except MissingEntry:
                source_cell = None
            if source_cell is not None and source_cell.locked and cell.cell_type == source_cell.cell_type:
                released = copy.deepcopy(cell)
                released.source = source_cell.source
                ClearHiddenTests(parent=self)._remove_hidden_test_region(released)
                if released.source == cell.source:
                    cell.source = source_cell.source
        return super().preprocess_cell(cell, resources, cell_index)


c.Autograde.sanitize_preprocessors = [
    ClearOutput,
    DeduplicateIds,
    OverwriteKernelspec,
    OverwriteCellsAsReleased,
    CheckCellMetadata,
]
# A deleted check cell is put back from the gradebook (and nbgrader logs "Missing grade cell").
c.OverwriteCells.add_missing_cells = True

# Kernels on ipc sockets in a private folder each: kernels started side by side never draw the same
# TCP port (tools/ipc_kernel.py). nbgrader's own Execute ignores c.Execute.kernel_manager_class.
c.Autograde.autograde_preprocessors = [
    IpcExecute,
    IgnorePattern,
    ClearMetadataPreprocessor,
    LimitOutput,
    SaveAutoGrades,
    AssignLatePenalties,
    CheckCellMetadata,
]

# Marking runs every notebook top to bottom: a cell may run 300 s (room for a notebook that trains
# when its checkpoint is missing), then it is interrupted and the rest of the notebook still runs.
# `tools/labs.py grade --timeout S` overrides it; --submission-timeout bounds a whole notebook.
c.Execute.timeout = 300
c.Execute.interrupt_on_timeout = True
c.Autograde.create_student = True
