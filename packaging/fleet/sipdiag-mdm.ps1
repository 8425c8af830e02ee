<#
.SYNOPSIS
  MDM wrapper (Intune, other Windows management tools): run `sipdiag check`, keep the last N
  JSON reports, and return sipdiag's exit code (0 ok, 1 checks failed, 64 usage, 70 internal,
  130 interrupted).

  -Watch (or $env:WATCH = '1') also registers `sipdiag watch` as a scheduled task that starts
  at every user's logon in that user's session (audio devices, credential store) with
  %APPDATA%\sipdiag\profile.toml; re-registering replaces it. Run it elevated (Intune runs
  scripts as SYSTEM). Windows has no SIGTERM: ending the task kills the watch, so its timeline
  has no end line (`sipdiag report` says so); every complete line is kept.
.EXAMPLE
  powershell -ExecutionPolicy Bypass -File sipdiag-mdm.ps1 -Keep 10 -- --profile C:\ProgramData\sipdiag\profile.toml
.EXAMPLE
  powershell -ExecutionPolicy Bypass -File sipdiag-mdm.ps1 -Watch -Sipdiag 'C:\Program Files\sipdiag\sipdiag.exe'
#>
param(
  [int]$Keep = 10,
  [string]$Dir = (Join-Path $env:LOCALAPPDATA 'sipdiag-reports'),
  [string]$Sipdiag = 'sipdiag.exe',
  [switch]$Watch,
  [Parameter(ValueFromRemainingArguments = $true)][string[]]$CheckArgs = @()
)
if ($Keep -lt 1) { Write-Error "sipdiag-mdm: -Keep needs a positive number"; exit 64 }
if ($Watch -or $env:WATCH -eq '1') {
  $exe = (Get-Command $Sipdiag -ErrorAction SilentlyContinue).Source
  if (-not $exe) { Write-Error "sipdiag-mdm: -Watch: no program '$Sipdiag'"; exit 64 }
  try {
    # %APPDATA% in single quotes: Task Scheduler expands it when the task runs, as that user.
    $action = New-ScheduledTaskAction -Execute $exe `
      -Argument 'watch --quiet --profile "%APPDATA%\sipdiag\profile.toml" --interval 60'
    $trigger = New-ScheduledTaskTrigger -AtLogOn
    # S-1-5-32-545 = BUILTIN\Users: whoever logs on, in their own session, not elevated.
    $principal = New-ScheduledTaskPrincipal -GroupId 'S-1-5-32-545' -RunLevel Limited
    $settings = New-ScheduledTaskSettingsSet -ExecutionTimeLimit ([TimeSpan]::Zero) `
      -RestartCount 3 -RestartInterval (New-TimeSpan -Minutes 1) -MultipleInstances IgnoreNew
    Register-ScheduledTask -TaskName 'sipdiag watch' -Action $action -Trigger $trigger `
      -Principal $principal -Settings $settings -Force -ErrorAction Stop | Out-Null
  } catch {
    Write-Error "sipdiag-mdm: cannot register the sipdiag watch task: $_"; exit 70
  }
}
New-Item -ItemType Directory -Force -Path $Dir | Out-Null
$stamp = (Get-Date).ToUniversalTime().ToString('yyyyMMddTHHmmssZ')
$out = Join-Path $Dir "sipdiag-$stamp-$PID.json"
& $Sipdiag check --quiet --format json --out $out @CheckArgs | Out-Null
$code = $LASTEXITCODE
Get-ChildItem -Path $Dir -Filter 'sipdiag-*.json' | Sort-Object Name -Descending |
  Select-Object -Skip $Keep | Remove-Item -Force
exit $code
