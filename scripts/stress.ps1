<#
.SYNOPSIS
    Runs the PortWatch stress scenarios against the installed driver.

.DESCRIPTION
    Runs portwatch-stress.exe once per scenario (lwf-logo, ioctl-storm,
    datapath, lifecycle, races) against \\.\PortWatch, optionally restarting
    the network adapters while a scenario runs (each restart pauses,
    detaches and re-attaches PortWatch's filter modules). Run it with Driver
    Verifier on (verifier.ps1 -Action On -NdisWifi, then reboot).

    Each scenario's output goes to <OutputDir>\<scenario>.log. At the end
    the script collects the Verifier statistics (verifier /query), bug check
    events from the System log and any new crash dumps, and writes
    <OutputDir>\summary.json. It exits with 1 when a scenario failed, 2 when
    a bug check was recorded since the run started (after a crash, run it
    again with -Since to collect it).

.PARAMETER StressExe
    Path of portwatch-stress.exe. Defaults to the one next to this script.

.PARAMETER Scenario
    The scenarios to run (the names portwatch-stress takes). Defaults to all
    five, the LWF logo stress first. lwf-logo restarts the adapters PortWatch
    is bound to itself (its stop/start element); its receive, RESOURCES and
    status indication elements need the HLK's test miniport and are skipped
    here (tests/scenarios/README.md).

.PARAMETER Threads
    Worker threads per scenario (--threads). Defaults to 8.

.PARAMETER Ops
    Operations per thread (--ops). Ignored when -Duration is given.

.PARAMETER Duration
    Seconds per scenario (--duration) instead of a fixed operation count.

.PARAMETER Seed
    Random seed (--seed), to repeat a run. Defaults to a fresh one, printed.

.PARAMETER RestartAdapters
    Restart the adapters PortWatch is bound to during every scenario.

.PARAMETER RestartIntervalSeconds
    Seconds between adapter restarts. Defaults to 20.

.PARAMETER OutputDir
    Where logs and summary.json go. Defaults to .\stress-results\<timestamp>.

.PARAMETER Since
    Only collect: report bug checks and dumps newer than this time, run no
    scenario.

.EXAMPLE
    .\stress.ps1 -Duration 600 -RestartAdapters

.EXAMPLE
    .\stress.ps1 -Scenario races -Threads 16 -Ops 100000 -Seed 42

.EXAMPLE
    .\stress.ps1 -Since (Get-Date).AddHours(-2)
    After a bug check and reboot: collect the dump and the event.
#>
#Requires -RunAsAdministrator
[CmdletBinding()]
param(
    [string] $StressExe = (Join-Path $PSScriptRoot 'portwatch-stress.exe'),
    [ValidateSet('lwf-logo', 'ioctl-storm', 'datapath', 'lifecycle', 'races')]
    [string[]] $Scenario = @('lwf-logo', 'ioctl-storm', 'datapath', 'lifecycle', 'races'),
    [ValidateRange(1, 256)] [int] $Threads = 8,
    [ValidateRange(1, [int]::MaxValue)] [int] $Ops = 10000,
    [ValidateRange(0, 86400)] [int] $Duration = 0,
    [Nullable[int]] $Seed = $null,
    [switch] $RestartAdapters,
    [ValidateRange(1, 3600)] [int] $RestartIntervalSeconds = 20,
    [string] $OutputDir = (Join-Path (Get-Location) ('stress-results\' + (Get-Date -Format 'yyyyMMdd-HHmmss'))),
    [Nullable[datetime]] $Since = $null
)

Set-StrictMode -Version Latest
$ErrorActionPreference = 'Stop'
$HardwareId = 'pw_portwatch'

function Get-StressArguments([string] $Name, [int] $RunSeed) {
    $arguments = @($Name, '--threads', $Threads)
    if ($Name -eq 'lwf-logo') {
        # Stop/start of the miniport: the scenario restarts the bound adapters.
        foreach ($adapter in @(Get-NetAdapterBinding -ComponentID $HardwareId | Where-Object { $_.Enabled } | ForEach-Object { $_.Name })) {
            $arguments += @('--adapter', $adapter)
        }
    }
    if ($Duration -gt 0) { $arguments += @('--duration', $Duration) }
    else { $arguments += @('--ops', $Ops) }
    return $arguments + @('--seed', $RunSeed)
}

function Start-AdapterRestarts {
    $adapters = @(Get-NetAdapterBinding -ComponentID $HardwareId | Where-Object { $_.Enabled } | ForEach-Object { $_.Name })
    if ($adapters.Count -eq 0) { throw 'PortWatch is bound to no enabled adapter' }
    Start-Job -ArgumentList $adapters, $RestartIntervalSeconds -ScriptBlock {
        param([string[]] $Names, [int] $Interval)
        while ($true) {
            Start-Sleep -Seconds $Interval
            foreach ($name in $Names) { Restart-NetAdapter -Name $name -Confirm:$false }
        }
    }
}

function Invoke-Scenario([string] $Name, [int] $RunSeed) {
    $log = Join-Path $OutputDir "$Name.log"
    $arguments = Get-StressArguments $Name $RunSeed
    Write-Host "==> portwatch-stress $($arguments -join ' ')"
    $job = if ($RestartAdapters) { Start-AdapterRestarts } else { $null }
    $started = Get-Date
    try {
        & $StressExe @arguments 2>&1 | Tee-Object -FilePath $log | Out-Host
        $exitCode = $LASTEXITCODE
    }
    finally {
        if ($job) { Stop-Job $job; Remove-Job $job -Force }
    }
    return [pscustomobject]@{
        scenario = $Name
        seed     = $RunSeed
        exitCode = $exitCode
        seconds  = [int]((Get-Date) - $started).TotalSeconds
        log      = $log
    }
}

function Get-BugCheckEvents([datetime] $After) {
    # Event 1001 (source BugCheck) is written at the first boot after a crash.
    $filter = @{ LogName = 'System'; ProviderName = 'Microsoft-Windows-WER-SystemErrorReporting'; Id = 1001; StartTime = $After }
    @(Get-WinEvent -FilterHashtable $filter -ErrorAction SilentlyContinue | ForEach-Object {
        [pscustomobject]@{ time = $_.TimeCreated.ToString('o'); message = $_.Message }
    })
}

function Get-CrashDumps([datetime] $After) {
    $candidates = @("$env:SystemRoot\MEMORY.DMP") + @(Get-ChildItem "$env:SystemRoot\Minidump\*.dmp" -ErrorAction SilentlyContinue | ForEach-Object { $_.FullName })
    @($candidates | Where-Object { (Test-Path -LiteralPath $_) -and (Get-Item -LiteralPath $_).LastWriteTime -gt $After })
}

function Save-VerifierState {
    $path = Join-Path $OutputDir 'verifier-query.txt'
    & verifier.exe /query *> $path
    return $path
}

New-Item -ItemType Directory -Force -Path $OutputDir | Out-Null
$runStart = if ($Since) { $Since.Value } else { Get-Date }
$results = @()

if (-not $Since) {
    if (-not (Test-Path -LiteralPath $StressExe)) { throw "portwatch-stress.exe not found at $StressExe" }
    $runSeed = if ($null -ne $Seed) { $Seed.Value } else { Get-Random -Minimum 0 -Maximum ([int]::MaxValue) }
    Write-Host "Seed: $runSeed"
    foreach ($name in $Scenario) { $results += Invoke-Scenario $name $runSeed }
}

$summary = [pscustomobject]@{
    started      = $runStart.ToString('o')
    scenarios    = $results
    verifier     = Save-VerifierState
    bugChecks    = @(Get-BugCheckEvents $runStart)
    crashDumps   = @(Get-CrashDumps $runStart)
}
$summary | ConvertTo-Json -Depth 4 | Set-Content -Path (Join-Path $OutputDir 'summary.json')
$summary.scenarios | Format-Table -AutoSize | Out-Host
Write-Host "Results in $OutputDir"

if ($summary.bugChecks.Count -gt 0 -or $summary.crashDumps.Count -gt 0) {
    Write-Warning 'A bug check was recorded: open the dump in WinDbg (!analyze -v, !verifier).'
    exit 2
}
if ($results | Where-Object { $_.exitCode -ne 0 }) { exit 1 }
exit 0
