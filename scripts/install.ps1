<#
.SYNOPSIS
    Installs the PortWatch NDIS lightweight filter on a Windows test VM.

.DESCRIPTION
    Run from an elevated PowerShell on a disposable test VM, never on a
    machine you care about.

    1. Enables test signing (bcdedit /set testsigning on) when it is off.
       Test signing requires Secure Boot to be off in the VM's firmware
       settings. Enabling it needs a reboot: the script stops and asks you
       to reboot and run it again.
    2. Imports the package's test certificate (portwatch-test.cer) into the
       local machine's Trusted Root and Trusted Publishers stores.
    3. Installs the filter with netcfg from the package's INF
       (netcfg -v -l portwatch.inf -c s -i pw_portwatch).
    4. Checks that the filter is bound to the adapters (Get-NetAdapterBinding).

    The package folder must hold portwatch.sys, portwatch.inf, portwatch.cat
    and portwatch-test.cer. The catalog is made on Windows (cargo make, or
    Inf2Cat plus signtool); see docs/windows.md.

.PARAMETER PackagePath
    The driver package folder. Defaults to target\package\portwatch next to
    this script's repository.

.PARAMETER HardwareId
    The filter's component ID in the INF. Defaults to pw_portwatch.

.EXAMPLE
    .\install.ps1 -PackagePath C:\portwatch

.EXAMPLE
    .\install.ps1
    Installs from target\package\portwatch of this repository checkout.

.NOTES
    Uninstall with .\uninstall.ps1 (or netcfg -v -u pw_portwatch).
#>
#Requires -RunAsAdministrator
[CmdletBinding()]
param(
    [string] $PackagePath = (Join-Path $PSScriptRoot '..\target\package\portwatch'),
    [string] $HardwareId = 'pw_portwatch'
)

Set-StrictMode -Version Latest
$ErrorActionPreference = 'Stop'

function Test-TestSigningEnabled {
    $bootEntry = & bcdedit.exe /enum '{current}'
    if ($LASTEXITCODE -ne 0) { throw 'bcdedit /enum failed' }
    return [bool]($bootEntry | Select-String -Pattern '^testsigning\s+Yes' -Quiet)
}

function Test-SecureBootEnabled {
    try {
        return [bool](Confirm-SecureBootUEFI)
    }
    catch {
        # Legacy BIOS VMs and VMs without the UEFI variable have no Secure Boot.
        return $false
    }
}

function Enable-TestSigning {
    if (Test-SecureBootEnabled) {
        throw 'Secure Boot is on: turn it off in the VM firmware settings, then run this script again.'
    }
    & bcdedit.exe /set testsigning on
    if ($LASTEXITCODE -ne 0) { throw 'bcdedit /set testsigning on failed' }
    Write-Warning 'Test signing is now on. Reboot the VM, then run this script again.'
}

function Import-TestCertificate([string] $CertificatePath) {
    foreach ($store in 'Root', 'TrustedPublisher') {
        $location = "Cert:\LocalMachine\$store"
        Import-Certificate -FilePath $CertificatePath -CertStoreLocation $location | Out-Null
        Write-Host "Imported the test certificate into $location"
    }
}

function Assert-PackageComplete([string] $Folder) {
    foreach ($file in 'portwatch.sys', 'portwatch.inf', 'portwatch.cat', 'portwatch-test.cer') {
        if (-not (Test-Path -LiteralPath (Join-Path $Folder $file))) {
            throw "$file is missing from $Folder (the catalog comes from the Windows build; see docs/windows.md)"
        }
    }
}

function Install-Filter([string] $InfPath, [string] $ComponentId) {
    & netcfg.exe -v -l $InfPath -c s -i $ComponentId
    if ($LASTEXITCODE -ne 0) { throw "netcfg failed with exit code $LASTEXITCODE" }
}

function Show-Binding([string] $ComponentId) {
    $bindings = @(Get-NetAdapterBinding -ComponentID $ComponentId -ErrorAction SilentlyContinue)
    if ($bindings.Count -eq 0) {
        throw "PortWatch is installed but bound to no adapter (Get-NetAdapterBinding -ComponentID $ComponentId)"
    }
    $bindings | Format-Table -Property Name, DisplayName, Enabled -AutoSize | Out-Host
    if (-not ($bindings | Where-Object { $_.Enabled })) {
        throw 'PortWatch is bound to no enabled adapter'
    }
}

$package = (Resolve-Path -LiteralPath $PackagePath).Path
Assert-PackageComplete $package

if (-not (Test-TestSigningEnabled)) {
    Enable-TestSigning
    exit 3010  # ERROR_SUCCESS_REBOOT_REQUIRED
}

Import-TestCertificate (Join-Path $package 'portwatch-test.cer')
Install-Filter (Join-Path $package 'portwatch.inf') $HardwareId
Show-Binding $HardwareId

Write-Host 'PortWatch is installed. The control device is \\.\PortWatch.'
Write-Host "To uninstall: $PSScriptRoot\uninstall.ps1   (or: netcfg -v -u $HardwareId)"
