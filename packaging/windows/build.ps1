# Build the Windows application folder dist\medviewer\ and a zip of it (run on Windows 10/11,
# x64, from the repository root in PowerShell). Not built or tested by the project's CI:
# the recipe mirrors packaging/build_linux.sh, which is. See docs/packaging.md.
#
#   py -3.11 -m venv .venv-build
#   .venv-build\Scripts\python -m pip install ".[ai]" pyinstaller pillow
#   powershell -ExecutionPolicy Bypass -File packaging\windows\build.ps1
#
# PyPI's torch for Windows is the CPU build, so nothing CUDA-sized lands in the bundle.
# Pillow lets PyInstaller turn resources\medviewer.png into the .exe icon.
$ErrorActionPreference = "Stop"
$Root = Resolve-Path (Join-Path $PSScriptRoot "..\..")
$Python = if ($env:PYTHON) { $env:PYTHON } else { Join-Path $Root ".venv-build\Scripts\python.exe" }
Set-Location $Root
& $Python -m PyInstaller --noconfirm --clean --workpath build\pyinstaller --distpath dist packaging\medviewer.spec
if ($LASTEXITCODE -ne 0) { throw "PyInstaller failed ($LASTEXITCODE)" }
$Version = & $Python -c "import importlib.metadata as m; print(m.version('medviewer'))"
# The self-test needs no display; a failing bundle must not be shipped.
& dist\medviewer\medviewer.exe --self-test
if ($LASTEXITCODE -ne 0) { throw "the bundle's self-test failed" }
Compress-Archive -Force -Path dist\medviewer -DestinationPath "dist\medviewer-$Version-windows-x64.zip"
Write-Host "wrote dist\medviewer-$Version-windows-x64.zip"
