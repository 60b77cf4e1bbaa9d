<#
.SYNOPSIS
    Installs the PortWatch NDIS lightweight filter on a Windows test VM
    (a thin wrapper around portwatch.exe install).

.DESCRIPTION
    Run from an elevated PowerShell (Windows PowerShell 5.1 or PowerShell 7)
    on a disposable test VM. portwatch.exe install checks that the prompt is
    elevated and that test signing is on (bcdedit /enum {current}), imports
    the package's test certificate into the local machine's Root and
    TrustedPublisher stores (certutil -addstore), and installs the filter
    (netcfg -v -l portwatch.inf -c s -i pw_portwatch). When test signing is
    off it refuses and says what to run (bcdedit /set testsigning on, with
    Secure Boot off, then a reboot).

.PARAMETER PackagePath
    The driver package folder (portwatch.sys, portwatch.inf, portwatch.cat,
    portwatch-test.cer, portwatch.exe). Defaults to the folder of
    portwatch.exe.

.PARAMETER Certificate
    A certificate to trust instead of the package's portwatch-test.cer.

.PARAMETER PortWatchExe
    Path of portwatch.exe. Defaults to the one next to this script, then the
    one in target\package\portwatch of this repository, then PATH.

.EXAMPLE
    .\install.ps1 -PackagePath C:\portwatch

.EXAMPLE
    .\install.ps1
    Installs from the package that holds portwatch.exe.

.NOTES
    Exit status: portwatch.exe's (0 installed, 3 refused, 1 failed).
    Uninstall with .\uninstall.ps1 (portwatch.exe uninstall).
#>
#Requires -RunAsAdministrator
[CmdletBinding()]
param(
    [string] $PackagePath = '',
    [string] $Certificate = '',
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
$arguments = @('install')
if ($PackagePath) { $arguments += @('--package', (Resolve-Path -LiteralPath $PackagePath).Path) }
if ($Certificate) { $arguments += @('--certificate', (Resolve-Path -LiteralPath $Certificate).Path) }

# Native stderr goes straight to the console: never through 2>&1, which
# Windows PowerShell 5.1 turns into a terminating error under 'Stop'.
& $PortWatchExe @arguments
exit $LASTEXITCODE
