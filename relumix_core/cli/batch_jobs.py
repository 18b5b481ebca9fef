"""The job list of ``relumix relight-batch``: parsing, validation, and the split of jobs between processes.

A batch can run for hours on many GPUs, so everything that can be known from the list and the file system is
checked before any model loads, and every bad line is reported at once (with its line number), not one per run.
Only what needs the full decode (an unreadable video, an index past the end of a clip whose length is not stored
in its header) is left to the job itself, where a failure costs that one job.
"""

from __future__ import annotations

import csv
import os
import re
from dataclasses import dataclass
from pathlib import Path

from ..errors import ReLumixError

#: Column names of a list's optional header line (CSV, tab or whitespace separated).
COLUMNS = ("video", "reference", "output", "reference_index")
REQUIRED_COLUMNS = COLUMNS[:3]
LINE_FORMAT = "VIDEO REFERENCE OUTPUT [REFERENCE_INDEX]"
_PRINTF = re.compile(r"%(0\d+)?d")


@dataclass(frozen=True)
class Job:
    """One line of the list, with paths made absolute-or-relative-to-the-list's-folder."""

    index: int  # position among the list's jobs: decides the process and the seed offset
    line: int  # line number in the list file, for messages
    video: Path
    reference: Path
    output: str  # text, not Path: a trailing '/' asks for a PNG folder
    reference_index: int = 0


@dataclass(frozen=True)
class Problem:
    line: int
    message: str

    def __str__(self) -> str:
        return f"line {self.line}: {self.message}"


def split_jobs(count: int, process_index: int, num_processes: int) -> list[int]:
    """The job indices that process ``process_index`` of ``num_processes`` runs: job i goes to process i % n.

    Round robin rather than contiguous blocks, so that the processes finish at about the same time when long
    clips cluster in one part of the list, and so that a job's process depends only on its position.
    """
    if num_processes < 1 or not 0 <= process_index < num_processes:
        raise ValueError(f"process {process_index} of {num_processes} does not exist")
    return list(range(process_index, count, num_processes))


def load_jobs(list_path: str | os.PathLike[str], allow_existing: bool = False) -> list[Job]:
    """Parse and check the whole list; one :class:`ReLumixError` names every bad line.

    ``allow_existing`` (--force or --skip-existing) accepts outputs that already exist.
    """
    path = Path(list_path).expanduser()
    if not path.is_file():
        what = "is a folder" if path.is_dir() else "does not exist"
        raise ReLumixError(f"job list {path} {what}; pass a text file with one '{LINE_FORMAT}' per line")
    jobs, problems = parse_job_list(path)
    problems += check_jobs(jobs, allow_existing)
    if problems:
        problems.sort(key=lambda p: p.line)
        count = f"{len(problems)} problem{'s' if len(problems) > 1 else ''}"
        raise ReLumixError(f"{path} has {count}, nothing was run: " + "; ".join(map(str, problems)))
    if not jobs:
        raise ReLumixError(f"{path} holds no jobs; write one '{LINE_FORMAT}' per line")
    return jobs


def parse_job_list(path: Path) -> tuple[list[Job], list[Problem]]:
    """The jobs of the well-formed lines and a problem for each malformed one (no file-system checks).

    Blank lines and lines starting with ``#`` are skipped. Fields are separated by tabs when a line has any (so paths
    may hold spaces), else by whitespace; a first line ``video,reference,output[,reference_index]`` makes the file a
    CSV (the same names separated by tabs or spaces also work as a header, in any order). Relative paths are taken
    relative to the list's folder, so a list and its clips can move together.
    """
    try:
        text = path.read_text(encoding="utf-8-sig")  # a BOM from spreadsheet exports is not part of the header
    except (OSError, UnicodeDecodeError) as err:
        raise ReLumixError(f"cannot read job list {path} ({err}); is it a text file?") from err
    folder = path.parent
    columns = list(COLUMNS)
    is_csv = False
    jobs: list[Job] = []
    problems: list[Problem] = []
    seen_content = False
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        first = not seen_content
        seen_content = True
        if first and _looks_like_header(line):
            is_csv = "," in line
            header = _split(line, is_csv)
            bad = _header_problem([name.lower() for name in header])
            if bad:
                return [], [Problem(number, bad)]
            columns = [name.lower() for name in header]
            continue
        fields = _split(line, is_csv)
        job = _job_from_fields(fields, columns, is_csv, folder, len(jobs), number, problems)
        if job is not None:
            jobs.append(job)
    return jobs, problems


def _looks_like_header(line: str) -> bool:
    """A first line naming a column (``video``, ``reference``, ``output``) is a header: no file is called so."""
    return any(name.strip().lower() in REQUIRED_COLUMNS for name in re.split(r"[,\s]+", line))


def _split(line: str, is_csv: bool) -> list[str]:
    if is_csv:
        return [field.strip() for field in next(csv.reader([line]))]
    if "\t" in line:
        return [field.strip() for field in line.split("\t") if field.strip()]
    return line.split()


def _header_problem(names: list[str]) -> str | None:
    unknown = [name for name in names if name not in COLUMNS]
    missing = [name for name in REQUIRED_COLUMNS if name not in names]
    repeated = sorted({name for name in names if names.count(name) > 1})
    if unknown or missing or repeated:
        found = (f"unknown column {unknown[0]!r}" if unknown else f"missing column {missing[0]!r}" if missing
                 else f"column {repeated[0]!r} appears twice")
        return f"bad header ({found}); expected {','.join(REQUIRED_COLUMNS)}[,reference_index]"
    return None


def _job_from_fields(fields: list[str], columns: list[str], is_csv: bool, folder: Path, index: int, number: int,
                     problems: list[Problem]) -> Job | None:
    required = sum(name in REQUIRED_COLUMNS for name in columns)
    if not required <= len(fields) <= len(columns) or (is_csv and len(fields) != len(columns)):
        hint = (f"expected {len(columns)} comma-separated fields ({','.join(columns)})" if is_csv
                else f"expected {LINE_FORMAT}")
        if not is_csv and len(fields) == 1 and "," in fields[0]:
            hint += f"; a CSV needs the header line {','.join(REQUIRED_COLUMNS)}[,reference_index]"
        elif not is_csv and len(fields) > len(columns):
            hint += "; separate fields with tabs when paths contain spaces"
        problems.append(Problem(number, f"{len(fields)} fields, {hint}"))
        return None
    values = dict(zip(columns, fields, strict=False))  # a short whitespace line leaves reference_index out
    empty = [name for name in REQUIRED_COLUMNS if not values[name]]
    if empty:
        problems.append(Problem(number, f"empty {empty[0]}"))
        return None
    reference_index = 0
    text = values.get("reference_index", "")
    if text:
        try:
            reference_index = int(text)
        except ValueError:
            reference_index = -1
        if reference_index < 0:
            problems.append(Problem(number, f"reference index {text!r} is not a frame number (0, 1, 2, ...)"))
            return None
    output = os.path.expanduser(values["output"])
    trailing = "/" if output.endswith(("/", os.sep)) else ""
    return Job(
        index=index, line=number, video=_under(folder, values["video"]), reference=_under(folder, values["reference"]),
        output=str(_under(folder, output)) + trailing, reference_index=reference_index,
    )


def _under(folder: Path, text: str) -> Path:
    return folder / Path(os.path.expanduser(text))  # an absolute path replaces the folder


def check_jobs(jobs: list[Job], allow_existing: bool) -> list[Problem]:
    """File-system problems of the parsed jobs: missing inputs, unwritable, duplicate or existing outputs."""
    from ..media.video_io import VideoError, check_output

    problems: list[Problem] = []
    outputs: dict[str, int] = {}
    videos: dict[str, int] = {}
    for job in jobs:
        videos.setdefault(_key(str(job.video)), job.line)
    for job in jobs:
        if not job.video.exists() and not (_PRINTF.search(job.video.name) and job.video.parent.is_dir()):
            problems.append(Problem(job.line, f"video {job.video} does not exist"))
        else:
            frames = frame_count(job.video)
            if frames is not None and job.reference_index >= frames:
                problems.append(Problem(job.line, f"reference index {job.reference_index} is outside {job.video}, "
                                                  f"which has {frames} frames (use 0..{frames - 1})"))
        if not job.reference.is_file():
            what = "is a folder, not an image" if job.reference.is_dir() else "does not exist"
            problems.append(Problem(job.line, f"reference {job.reference} {what}"))
        key = _key(job.output)
        if key in outputs:
            problems.append(Problem(job.line, f"output {job.output} is also the output of line {outputs[key]}"))
            continue
        outputs[key] = job.line
        if key in videos:
            problems.append(Problem(job.line, f"output {job.output} is the input video of line {videos[key]}"))
            continue
        try:
            check_output(job.output, overwrite=True)  # format and folder
        except VideoError as err:
            problems.append(Problem(job.line, str(err)))
            continue
        if not allow_existing and output_exists(job.output):
            problems.append(Problem(job.line, f"output {job.output} exists; pass --force to overwrite or "
                                              "--skip-existing to keep it"))
    return problems


def output_exists(output: str) -> bool:
    """Whether ``output`` holds a finished result: what :func:`check_output` refuses without overwrite.

    Only called on outputs that passed ``check_output(overwrite=True)``, whose one remaining refusal is existence.
    """
    from ..media.video_io import VideoError, check_output

    try:
        check_output(output, overwrite=False)
    except VideoError:
        return True
    return False


def frame_count(video: Path) -> int | None:
    """Frames of a clip when its header or folder says so cheaply; ``None`` when only a full decode would tell."""
    from ..media.video_io import IMAGE_SUFFIXES

    try:
        if video.is_dir():
            return sum(1 for f in video.iterdir()
                       if f.suffix.lower() in IMAGE_SUFFIXES and not f.name.startswith(".") and f.is_file()) or None
        if video.suffix.lower() in IMAGE_SUFFIXES:
            from PIL import Image

            with Image.open(video) as img:
                return int(getattr(img, "n_frames", 1))
        import av

        with av.open(str(video)) as container:
            if not container.streams.video:
                return None
            return int(container.streams.video[0].frames) or None  # 0: not stored (webm, gif)
    except Exception:  # unreadable files fail in their own job, with the decoder's message
        return None


def _key(path: str) -> str:
    return os.path.normcase(os.path.abspath(path))
