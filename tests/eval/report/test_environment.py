"""The environment header of every report."""

import platform
import socket
import sys

from cdsvae.eval.report.environment import cpu_description, environment_header, git_commit


def test_header_names_versions_cpu_and_commit_but_not_the_host():
    text = environment_header()
    assert text.startswith("## Environment\n")
    for key in ("- date:", f"- python: {platform.python_version()}", "- torch:", "- system:", "- cpu:",
                "- git commit:"):
        assert key in text
    assert socket.gethostname() not in text


X86 = """processor\t: 0
vendor_id\t: AuthenticAMD
model name\t: AMD EPYC 7B13
flags\t\t: fpu sse sse2 sse4_1 sse4_2 avx fma avx2 bmi2
processor\t: 1
model name\t: AMD EPYC 7B13
flags\t\t: fpu sse sse2 sse4_1 sse4_2 avx fma avx2 bmi2
"""


def test_cpu_description_names_the_model_and_the_widest_vector_extension():
    assert cpu_description(X86, {}, 2) == "AMD EPYC 7B13, 2 CPUs, widest vector extension avx2"
    avx512 = X86.replace("avx2 bmi2", "avx2 bmi2 avx512f avx512bw")
    assert cpu_description(avx512, {}, 8).endswith("8 CPUs, widest vector extension avx512f")
    arm = "processor\t: 0\nFeatures\t: fp asimd evtstrm sve\nCPU implementer\t: 0x41\n"
    assert cpu_description(arm, {}, 4).endswith("4 CPUs, widest vector extension sve")
    assert cpu_description("", {}, 1).endswith("1 CPU, widest vector extension unknown")


def test_cpu_description_names_variables_that_narrow_the_kernels():
    got = cpu_description(X86, {"ATEN_CPU_CAPABILITY": "default", "ONEDNN_MAX_CPU_ISA": "", "HOME": "/x"}, 2)
    assert got == "AMD EPYC 7B13, 2 CPUs, widest vector extension avx2, ATEN_CPU_CAPABILITY=default"


def test_cpu_description_of_this_machine_without_arguments():
    got = cpu_description()
    assert "widest vector extension" in got and socket.gethostname() not in got


def test_git_commit_outside_a_repository_is_unknown(tmp_path):
    assert git_commit(tmp_path) == "unknown"
    assert git_commit() != ""


def test_torch_version_is_read_without_importing_torch(monkeypatch):
    import torch

    from cdsvae.eval.report.environment import torch_version

    assert torch_version() == torch.__version__  # torch already imported: its own attribute
    monkeypatch.delitem(sys.modules, "torch")
    assert torch_version() == torch.__version__  # read from the installed package's version.py
    assert "torch" not in sys.modules


def test_a_report_of_finished_runs_imports_no_torch():
    """The report only reads: its environment header and system labels must not cost a torch import."""
    import subprocess

    code = ("import sys; from cdsvae.eval.report.environment import environment_header; "
            "from cdsvae.eval.report.experiment import system_label; environment_header(); "
            "assert system_label({'loss': {'con_s': 0.0, 'con_z': 0.0, 'mi_sz': 0.0}}) == 'DSVAE'; "
            "sys.exit('torch' in sys.modules)")
    assert subprocess.run([sys.executable, "-c", code], timeout=60).returncode == 0
