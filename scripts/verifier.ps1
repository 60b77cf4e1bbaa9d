<#
.SYNOPSIS
    Turns Driver Verifier on or off for portwatch.sys, or shows its state.

.DESCRIPTION
    -Action On enables Driver Verifier for portwatch.sys with the standard
    flags (0x209BB: special pool, force IRQL checking, pool tracking, I/O
    verification, deadlock detection, DMA checking, security checks,
    miscellaneous checks, DDI compliance checking), plus on request
    NDIS/WIFI verification (0x00200000) and randomized low resources
    simulation (0x4). The settings take effect after a reboot.

    -Action Query shows the saved settings (verifier /querysettings) and,
    when the driver is loaded under Verifier, its statistics (verifier
    /query).

    -Action Off removes all Verifier settings (verifier /reset); reboot
    afterwards.

.PARAMETER Action
    On, Off or Query (the default).

.PARAMETER NdisWifi
    With -Action On: add NDIS/WIFI verification (0x00200000).

.PARAMETER LowResources
    With -Action On: add randomized low resources simulation (0x4), which
    fails allocations at random. Expect failed attaches and IOCTLs.

.PARAMETER Driver
    The image name to verify. Defaults to portwatch.sys.

.EXAMPLE
    .\verifier.ps1 -Action On -NdisWifi
    Standard flags plus NDIS/WIFI verification; then reboot.

.EXAMPLE
    .\verifier.ps1 -Action Query

.EXAMPLE
    .\verifier.ps1 -Action Off
#>
#Requires -RunAsAdministrator
[CmdletBinding()]
param(
    [ValidateSet('On', 'Off', 'Query')] [string] $Action = 'Query',
    [switch] $NdisWifi,
    [switch] $LowResources,
    [string] $Driver = 'portwatch.sys'
)

Set-StrictMode -Version Latest
$ErrorActionPreference = 'Stop'

$StandardFlags = 0x000209BB
$NdisWifiFlag = 0x00200000
$LowResourcesFlag = 0x00000004

function Invoke-Verifier([string[]] $Arguments) {
    & verifier.exe @Arguments
    if ($LASTEXITCODE -ne 0 -and $LASTEXITCODE -ne 2) {
        # verifier returns 2 when the change needs a reboot.
        throw "verifier $($Arguments -join ' ') failed with exit code $LASTEXITCODE"
    }
}

function Get-VerifierFlags {
    $flags = $StandardFlags
    if ($NdisWifi) { $flags = $flags -bor $NdisWifiFlag }
    if ($LowResources) { $flags = $flags -bor $LowResourcesFlag }
    return $flags
}

switch ($Action) {
    'On' {
        $flags = '0x{0:X8}' -f (Get-VerifierFlags)
        Invoke-Verifier @('/flags', $flags, '/driver', $Driver)
        Write-Warning "Driver Verifier ($flags) is set for $Driver. Reboot to apply it."
    }
    'Off' {
        Invoke-Verifier @('/reset')
        Write-Warning 'Driver Verifier settings are removed. Reboot to apply it.'
    }
    'Query' {
        # Informational: /query reports an error when no verified driver is loaded.
        & verifier.exe /querysettings
        & verifier.exe /query
    }
}
