<#
.SYNOPSIS
    Uninstalls the PortWatch NDIS lightweight filter from a Windows test VM.

.DESCRIPTION
    Unbinds and removes the filter with netcfg (netcfg -v -u pw_portwatch),
    then deletes PortWatch's driver package from the driver store (pnputil).
    Optionally removes the test certificate from the Trusted Root and
    Trusted Publishers stores and turns test signing off (reboot needed).

.PARAMETER HardwareId
    The filter's component ID in the INF. Defaults to pw_portwatch.

.PARAMETER CertificatePath
    The package's portwatch-test.cer; with -RemoveCertificate, the
    certificate with this thumbprint is removed from the stores.

.PARAMETER RemoveCertificate
    Also remove the test certificate.

.PARAMETER DisableTestSigning
    Also turn test signing off (bcdedit /set testsigning off; reboot needed).

.EXAMPLE
    .\uninstall.ps1

.EXAMPLE
    .\uninstall.ps1 -RemoveCertificate -CertificatePath C:\portwatch\portwatch-test.cer -DisableTestSigning
#>
#Requires -RunAsAdministrator
[CmdletBinding()]
param(
    [string] $HardwareId = 'pw_portwatch',
    [string] $CertificatePath = (Join-Path $PSScriptRoot '..\target\package\portwatch\portwatch-test.cer'),
    [switch] $RemoveCertificate,
    [switch] $DisableTestSigning
)

Set-StrictMode -Version Latest
$ErrorActionPreference = 'Stop'

function Uninstall-Filter([string] $ComponentId) {
    & netcfg.exe -v -u $ComponentId
    if ($LASTEXITCODE -ne 0) { throw "netcfg -u failed with exit code $LASTEXITCODE" }
}

function Get-PortWatchDriverStoreInf {
    # pnputil lists each staged package as "Published Name" / "Original Name" pairs.
    $published = $null
    foreach ($line in (& pnputil.exe /enum-drivers)) {
        if ($line -match '^\s*Published Name\s*:\s*(\S+)') { $published = $Matches[1] }
        elseif ($line -match '^\s*Original Name\s*:\s*portwatch\.inf\s*$' -and $published) { $published }
    }
}

function Remove-DriverPackage {
    foreach ($oemInf in @(Get-PortWatchDriverStoreInf)) {
        & pnputil.exe /delete-driver $oemInf /uninstall
        if ($LASTEXITCODE -ne 0) { Write-Warning "pnputil could not delete $oemInf" }
        else { Write-Host "Deleted $oemInf from the driver store" }
    }
}

function Remove-TestCertificate([string] $Path) {
    $certificate = New-Object System.Security.Cryptography.X509Certificates.X509Certificate2 -ArgumentList (Resolve-Path -LiteralPath $Path).Path
    foreach ($store in 'Root', 'TrustedPublisher') {
        $item = "Cert:\LocalMachine\$store\$($certificate.Thumbprint)"
        if (Test-Path -LiteralPath $item) {
            Remove-Item -LiteralPath $item
            Write-Host "Removed the test certificate from Cert:\LocalMachine\$store"
        }
    }
}

Uninstall-Filter $HardwareId
Remove-DriverPackage
if ($RemoveCertificate) { Remove-TestCertificate $CertificatePath }
if ($DisableTestSigning) {
    & bcdedit.exe /set testsigning off
    if ($LASTEXITCODE -ne 0) { throw 'bcdedit /set testsigning off failed' }
    Write-Warning 'Test signing is off after the next reboot.'
}
Write-Host 'PortWatch is uninstalled.'
