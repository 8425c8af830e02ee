<#
.SYNOPSIS
  MDM wrapper (Intune, other Windows management tools): run `sipdiag check`, keep the last N
  JSON reports, and return sipdiag's exit code (0 ok, 1 checks failed, 64 usage, 70 internal,
  130 interrupted).
.EXAMPLE
  powershell -ExecutionPolicy Bypass -File sipdiag-mdm.ps1 -Keep 10 -- --profile C:\ProgramData\sipdiag\profile.toml
#>
param(
  [int]$Keep = 10,
  [string]$Dir = (Join-Path $env:LOCALAPPDATA 'sipdiag-reports'),
  [string]$Sipdiag = 'sipdiag.exe',
  [Parameter(ValueFromRemainingArguments = $true)][string[]]$CheckArgs = @()
)
if ($Keep -lt 1) { Write-Error "sipdiag-mdm: -Keep needs a positive number"; exit 64 }
New-Item -ItemType Directory -Force -Path $Dir | Out-Null
$stamp = (Get-Date).ToUniversalTime().ToString('yyyyMMddTHHmmssZ')
$out = Join-Path $Dir "sipdiag-$stamp-$PID.json"
& $Sipdiag check --quiet --format json --out $out @CheckArgs | Out-Null
$code = $LASTEXITCODE
Get-ChildItem -Path $Dir -Filter 'sipdiag-*.json' | Sort-Object Name -Descending |
  Select-Object -Skip $Keep | Remove-Item -Force
exit $code
