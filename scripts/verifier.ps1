<#
.SYNOPSIS
    Turns Driver Verifier on or off for portwatch.sys, or shows its state
    (a thin wrapper around portwatch.exe verifier).

.DESCRIPTION
    -Action On runs portwatch.exe verifier on: the standard checks (special
    pool, force IRQL checking, pool tracking, I/O verification, deadlock
    detection, DMA checking, security checks, miscellaneous checks, DDI
    compliance checking) plus NDIS/WIFI verification, as rule classes
    (verifier /ruleclasses 1 2 4 5 6 8 9 12 18 22 /driver portwatch.sys).
    -LowResources adds randomized low resources simulation (rule class 3);
    -NoNdisWifi leaves NDIS/WIFI verification out (verifier /standard
    /driver portwatch.sys). The settings take effect after a reboot.

    -Action Status shows the saved settings (verifier /querysettings) and
    the live statistics (verifier /query).

    -Action Off removes every Verifier setting (verifier /reset); reboot
    afterwards.

.PARAMETER Action
    On, Off or Status (the default).

.PARAMETER LowResources
    With -Action On: add randomized low resources simulation, which fails
    allocations at random. Expect failed attaches and IOCTLs.

.PARAMETER NoNdisWifi
    With -Action On: the standard checks only.

.PARAMETER PortWatchExe
    Path of portwatch.exe. Defaults to the one next to this script, then the
    one in target\package\portwatch of this repository, then PATH.

.EXAMPLE
    .\verifier.ps1 -Action On
    Standard checks plus NDIS/WIFI verification; then reboot.

.EXAMPLE
    .\verifier.ps1 -Action Status

.EXAMPLE
    .\verifier.ps1 -Action Off
#>
#Requires -RunAsAdministrator
[CmdletBinding()]
param(
    [ValidateSet('On', 'Off', 'Status')] [string] $Action = 'Status',
    [switch] $LowResources,
    [switch] $NoNdisWifi,
    [string] $PortWatchExe = ''
)

Set-StrictMode -Version Latest
$ErrorActionPreference = 'Stop'

function Resolve-PortWatchExe([string] $Given) {
    if ($Given) { return (Resolve-Path -LiteralPath $Given).Path }
    foreach ($candidate in @((Join-Path $PSScriptRoot 'portwatch.exe'), (Join-Path $PSScriptRoot '..\target\package\portwatch\portwatch.exe'))) {
        if (Test-Path -LiteralPath $candidate) { return (Resolve-Path -LiteralPath $candidate).Path }
    }
    $onPath = Get-Command -Name 'portwatch.exe' -CommandType Application -ErrorAction SilentlyContinue | Select-Object -First 1
    if ($onPath) { return $onPath.Source }
    throw 'portwatch.exe not found: pass -PortWatchExe (it ships in the driver package)'
}

$PortWatchExe = Resolve-PortWatchExe $PortWatchExe
$arguments = switch ($Action) {
    'On' {
        $on = @('verifier', 'on')
        if ($LowResources) { $on += '--low-resources' }
        if ($NoNdisWifi) { $on += '--no-ndis-wifi' }
        $on
    }
    'Off' { @('verifier', 'off') }
    'Status' { @('verifier', 'status') }
}
& $PortWatchExe @arguments
exit $LASTEXITCODE
