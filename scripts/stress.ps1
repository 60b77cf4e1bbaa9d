<#
.SYNOPSIS
    Runs the PortWatch stress scenarios against the installed driver and
    collects what Driver Verifier recorded.

.DESCRIPTION
    Runs portwatch.exe stress once per scenario (lwf-logo, ioctl-storm,
    datapath, lifecycle, races) against \\.\PortWatch, optionally restarting
    the network adapters PortWatch is bound to while a scenario runs (each
    restart pauses, detaches and re-attaches its filter modules). Run it with
    Driver Verifier on (.\verifier.ps1 -Action On, then reboot).

    portwatch.exe picks the adapter and the traffic peer (the adapter's
    default gateway) itself when there is one obvious choice; otherwise pass
    -Adapter and -Peer. Its progress goes to the console; each scenario's
    summary is also written to <OutputDir>\<scenario>.log. At the end the
    script saves the Verifier state (portwatch.exe verifier status), bug
    check events from the System log and any new crash dumps, and writes
    <OutputDir>\summary.json. It exits with 1 when a scenario was not clean,
    2 when a bug check was recorded since the run started (after a crash,
    run it again with -Since to collect it).

    Works in Windows PowerShell 5.1 and PowerShell 7, in a console (not the
    ISE): a native tool's stderr is never redirected through PowerShell.

.PARAMETER Scenario
    The scenarios to run (portwatch.exe stress's names). Defaults to all
    five, the LWF logo stress first.

.PARAMETER Threads
    Worker threads per scenario. Defaults to 8.

.PARAMETER Ops
    Operations per scenario, in all (shared by the threads, not per
    thread). Ignored when -Duration is given.

.PARAMETER Duration
    Seconds per scenario instead of a number of operations.

.PARAMETER Seed
    Random seed, to repeat a run. Defaults to a fresh one, printed.

.PARAMETER Adapter
    Adapters the scenarios restart and send through. Defaults to the one
    adapter PortWatch is bound to.

.PARAMETER Peer
    IPv4 peer for the UDP traffic. Defaults to the adapter's default
    gateway.

.PARAMETER RestartAdapters
    Also restart the bound adapters every -RestartIntervalSeconds during
    every scenario.

.PARAMETER RestartIntervalSeconds
    Seconds between adapter restarts. Defaults to 20.

.PARAMETER OutputDir
    Where logs and summary.json go. Defaults to .\stress-results\<timestamp>.

.PARAMETER Since
    Only collect: report bug checks and dumps newer than this time, run no
    scenario.

.PARAMETER PortWatchExe
    Path of portwatch.exe. Defaults to the one next to this script, then the
    one in target\package\portwatch of this repository, then PATH.

.EXAMPLE
    .\stress.ps1 -Duration 600 -RestartAdapters

.EXAMPLE
    .\stress.ps1 -Scenario races -Threads 16 -Ops 100000 -Seed 42

.EXAMPLE
    .\stress.ps1 -Scenario datapath -Adapter Ethernet -Peer 192.168.1.1

.EXAMPLE
    .\stress.ps1 -Since (Get-Date).AddHours(-2)
    After a bug check and reboot: collect the dump and the event.
#>
#Requires -RunAsAdministrator
[CmdletBinding()]
param(
    [ValidateSet('lwf-logo', 'ioctl-storm', 'datapath', 'lifecycle', 'races')]
    [string[]] $Scenario = @('lwf-logo', 'ioctl-storm', 'datapath', 'lifecycle', 'races'),
    [ValidateRange(1, 1024)] [int] $Threads = 8,
    [ValidateRange(1, [int]::MaxValue)] [int] $Ops = 100000,
    [ValidateRange(0, 86400)] [int] $Duration = 0,
    [Nullable[int]] $Seed = $null,
    [string[]] $Adapter = @(),
    [string] $Peer = '',
    [switch] $RestartAdapters,
    [ValidateRange(1, 3600)] [int] $RestartIntervalSeconds = 20,
    [string] $OutputDir = (Join-Path (Get-Location) ('stress-results\' + (Get-Date -Format 'yyyyMMdd-HHmmss'))),
    [Nullable[datetime]] $Since = $null,
    [string] $PortWatchExe = ''
)

Set-StrictMode -Version Latest
$ErrorActionPreference = 'Stop'
$HardwareId = 'pw_portwatch'

function Resolve-PortWatchExe([string] $Given) {
    if ($Given) { return (Resolve-Path -LiteralPath $Given).Path }
    foreach ($candidate in @((Join-Path $PSScriptRoot 'portwatch.exe'), (Join-Path $PSScriptRoot '..\target\package\portwatch\portwatch.exe'))) {
        if (Test-Path -LiteralPath $candidate) { return (Resolve-Path -LiteralPath $candidate).Path }
    }
    $onPath = Get-Command -Name 'portwatch.exe' -CommandType Application -ErrorAction SilentlyContinue | Select-Object -First 1
    if ($onPath) { return $onPath.Source }
    throw 'portwatch.exe not found: pass -PortWatchExe (it ships in the driver package)'
}

function Get-StressArguments([string] $Name, [int] $RunSeed) {
    $arguments = @('stress', $Name, '--threads', $Threads, '--seed', $RunSeed)
    if ($Duration -gt 0) { $arguments += @('--duration', $Duration) }
    else { $arguments += @('--ops', $Ops) }
    foreach ($name in $Adapter) { $arguments += @('--adapter', $name) }
    if ($Peer) { $arguments += @('--peer', $Peer) }
    return $arguments
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
    Write-Host "==> portwatch.exe $($arguments -join ' ')"
    $job = if ($RestartAdapters) { Start-AdapterRestarts } else { $null }
    $started = Get-Date
    try {
        # stdout (the summary) goes to the log and the console; stderr (the
        # progress) goes straight to the console, never through PowerShell's
        # error stream, so 'Stop' cannot turn it into a terminating error.
        & $PortWatchExe @arguments | Tee-Object -FilePath $log | Out-Host
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
    # Event 1001 (WER-SystemErrorReporting) is written at the first boot after a crash.
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
    $path = Join-Path $OutputDir 'verifier-status.txt'
    & $PortWatchExe verifier status | Out-File -FilePath $path -Encoding utf8
    return $path
}

$PortWatchExe = Resolve-PortWatchExe $PortWatchExe
New-Item -ItemType Directory -Force -Path $OutputDir | Out-Null
$runStart = if ($Since) { $Since.Value } else { Get-Date }
$results = @()

if (-not $Since) {
    $runSeed = if ($null -ne $Seed) { $Seed.Value } else { Get-Random -Minimum 0 -Maximum ([int]::MaxValue) }
    Write-Host "Seed: $runSeed"
    foreach ($name in $Scenario) { $results += Invoke-Scenario $name $runSeed }
}

$summary = [pscustomobject]@{
    started    = $runStart.ToString('o')
    scenarios  = $results
    verifier   = Save-VerifierState
    bugChecks  = @(Get-BugCheckEvents $runStart)
    crashDumps = @(Get-CrashDumps $runStart)
}
$summary | ConvertTo-Json -Depth 4 | Set-Content -Path (Join-Path $OutputDir 'summary.json')
if ($results) { $results | Format-Table -AutoSize | Out-Host }
Write-Host "Results in $OutputDir"

if ($summary.bugChecks.Count -gt 0 -or $summary.crashDumps.Count -gt 0) {
    Write-Warning 'A bug check was recorded: open the dump in WinDbg (!analyze -v, !verifier).'
    exit 2
}
if ($results | Where-Object { $_.exitCode -ne 0 }) { exit 1 }
exit 0
