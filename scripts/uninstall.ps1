<#
.SYNOPSIS
    Uninstalls the PortWatch NDIS lightweight filter from a Windows test VM
    (a thin wrapper around portwatch.exe uninstall).

.DESCRIPTION
    portwatch.exe uninstall removes the filter (netcfg -v -u pw_portwatch)
    and deletes PortWatch's package from the driver store (pnputil
    /enum-drivers to find its oemNN.inf, then pnputil /delete-driver
    oemNN.inf /uninstall). The test certificate stays trusted and test
    signing stays as it is.

.PARAMETER KeepDriverStore
    Only netcfg -u: leave the package in the driver store.

.PARAMETER PortWatchExe
    Path of portwatch.exe. Defaults to the one next to this script, then the
    one in target\package\portwatch of this repository, then PATH.

.EXAMPLE
    .\uninstall.ps1

.EXAMPLE
    .\uninstall.ps1 -KeepDriverStore
#>
#Requires -RunAsAdministrator
[CmdletBinding()]
param(
    [switch] $KeepDriverStore,
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
$arguments = @('uninstall')
if ($KeepDriverStore) { $arguments += '--keep-driver-store' }
& $PortWatchExe @arguments
exit $LASTEXITCODE
