//! The security catalog of the PortWatch driver package, made on Linux.
//!
//! Windows stages a driver package through the driver store only when a
//! signed catalog (`CatalogFile = portwatch.cat` in the INF) vouches for
//! every file of the package. On Windows the WDK's Inf2Cat writes it; this
//! crate writes the same structure without the WDK:
//!
//! - [`Catalog::for_package`] reads the INF like Inf2Cat does (the files of
//!   `[SourceDisksFiles]`, the hardware IDs and OS decorations of the
//!   models) and hashes each member: the Authenticode PE hash (no page
//!   hashes) for PE images, the SHA-256 of the bytes for the INF;
//! - [`Catalog::to_unsigned_der`] encodes a version 2 catalog (SHA-256
//!   member tags): a PKCS#7 `SignedData` without signers whose content is
//!   the certificate trust list. `osslsigncode sign -in unsigned.cat` signs
//!   it (scripts/package.sh);
//! - [`read`] parses a catalog back into a [`Listing`] (members, their
//!   hashes and attributes, the catalog attributes, the certificates).
//!
//! All encoding and decoding is RustCrypto's `der`/`cms`/`x509-cert`; the
//! types are in [`asn1`].

pub mod asn1;
pub mod authenticode;
pub mod inf;
pub mod oid;

use asn1::{
    CatNameValue, CertificateTrustList, DigestInfo, SpcAttributeTypeAndOptionalValue, SpcIndirectDataContent, SpcLink,
    SpcPeImageData, SpcString, TrustedSubject,
};
use cms::content_info::ContentInfo;
use cms::signed_data::{CertificateSet, EncapsulatedContentInfo, SignedData, SignerInfos};
use der::asn1::{Any, BitString, BmpString, OctetString, SetOfVec, UtcTime};
use der::{Decode, Encode, Tag, TagNumber};
use std::path::Path;
use x509_cert::attr::Attribute;
use x509_cert::ext::Extension;
use x509_cert::spki::AlgorithmIdentifierOwned;

/// Errors of this crate.
pub type Error = Box<dyn std::error::Error + Send + Sync>;

/// `CRYPTCAT_ATTR_AUTHENTICATED | CRYPTCAT_ATTR_DATAASCII | CRYPTCAT_ATTR_NAMEASCII`:
/// the flags Inf2Cat gives its name/value attributes.
pub const NAME_VALUE_FLAGS: u32 = 0x1001_0001;

/// The `OSAttr` member attribute Inf2Cat writes for Windows 10 and 11
/// targets ("2:" then the NT version).
pub const OS_ATTR_WINDOWS_10: &str = "2:10.0";

/// Windows builds that Inf2Cat has an OS code for: (build, `/os:` code for
/// x64, the catalog's `OS` attribute value).
pub const INF2CAT_OS_X64: [(u32, &str, &str); 4] = [
    (10240, "10_X64", "_v100_X64"),
    (19041, "10_VB_X64", "_v100_X64_Vb"),
    (22000, "10_CO_X64", "_v100_X64_21H2"),
    (22621, "10_NI_X64", "_v100_X64_22H2"),
];

/// The Inf2Cat OS (`/os:` code, catalog `OS` value) of a Windows build.
pub fn inf2cat_os_for_build(build: u32) -> Option<(&'static str, &'static str)> {
    INF2CAT_OS_X64.iter().find(|(b, _, _)| *b == build).map(|(_, code, os)| (*code, *os))
}

/// How a member's hash is taken.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MemberKind {
    /// Authenticode PE image hash (`SPC_PE_IMAGE_DATA`).
    PeImage,
    /// Hash of all bytes (`SPC_CAB_DATA`, as MakeCat records flat files).
    Flat,
}

/// A file of the package and its hash.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Member {
    /// The file name, as the `File` attribute records it.
    pub name: String,
    /// How the hash was taken.
    pub kind: MemberKind,
    /// The SHA-256 hash; also the member tag.
    pub hash: [u8; 32],
}

/// Everything a catalog says.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Catalog {
    /// The members.
    pub members: Vec<Member>,
    /// The `OSAttr` value of every member.
    pub os_attr: String,
    /// The catalog's `OS` attribute (comma-separated OS values).
    pub os: String,
    /// Hardware IDs: the catalog's `HWID1`, `HWID2`… attributes.
    pub hardware_ids: Vec<String>,
    /// When the catalog was made, seconds since the Unix epoch.
    pub made_at: u64,
}

/// UTF-16LE with a terminating NUL, as catalog values are stored.
fn utf16z(text: &str) -> Vec<u8> {
    text.encode_utf16().chain([0]).flat_map(u16::to_le_bytes).collect()
}

/// Decodes UTF-16LE, dropping a terminating NUL.
fn from_utf16z(bytes: &[u8]) -> String {
    let units: Vec<u16> = bytes.chunks_exact(2).map(|c| u16::from_le_bytes([c[0], c[1]])).collect();
    let end = units.iter().position(|&u| u == 0).unwrap_or(units.len());
    String::from_utf16_lossy(&units[..end])
}

fn name_value(name: &str, value: &str) -> Result<CatNameValue, Error> {
    Ok(CatNameValue {
        tag: BmpString::from_utf8(name)?,
        flags: NAME_VALUE_FLAGS,
        value: OctetString::new(utf16z(value))?,
    })
}

fn attribute(oid: der::asn1::ObjectIdentifier, value: Any) -> Result<Attribute, Error> {
    Ok(Attribute { oid, values: SetOfVec::try_from(vec![value])? })
}

fn sha256_algorithm() -> AlgorithmIdentifierOwned {
    AlgorithmIdentifierOwned { oid: oid::SHA256, parameters: Some(Any::null()) }
}

/// The empty file link Inf2Cat writes (`SpcLink.file`, an empty Unicode string).
fn empty_file_link() -> Result<SpcLink, Error> {
    Ok(SpcLink::File(SpcString::Unicode(BmpString::from_utf8("")?)))
}

fn indirect_data(member: &Member) -> Result<SpcIndirectDataContent, Error> {
    let (value_type, value) = match member.kind {
        MemberKind::PeImage => {
            // includeResources | includeImportAddressTable, as Inf2Cat writes.
            let data = SpcPeImageData { flags: BitString::new(5, [0xa0])?, file: Some(empty_file_link()?) };
            (oid::SPC_PE_IMAGE_DATA, Any::encode_from(&data)?)
        }
        MemberKind::Flat => (oid::SPC_CAB_DATA, Any::encode_from(&empty_file_link()?)?),
    };
    Ok(SpcIndirectDataContent {
        data: SpcAttributeTypeAndOptionalValue { value_type, value: Some(value) },
        message_digest: DigestInfo { digest_algorithm: sha256_algorithm(), digest: OctetString::new(member.hash)? },
    })
}

impl Catalog {
    /// The catalog of the driver package in `dir` whose INF is `inf_name`:
    /// the INF and every file its `[SourceDisksFiles]` lists, the `OS`
    /// attribute of the lowest build its models are decorated for.
    pub fn for_package(dir: &Path, inf_name: &str, made_at: u64) -> Result<Self, Error> {
        let inf_bytes = std::fs::read(dir.join(inf_name)).map_err(|e| format!("{inf_name}: {e}"))?;
        let facts = inf::InfFacts::parse(&String::from_utf8_lossy(&inf_bytes));
        let build = facts.lowest_build().ok_or("the INF's models are not decorated with a build number")?;
        let (_, os) = inf2cat_os_for_build(build).ok_or(format!("Inf2Cat has no OS code for build {build}"))?;
        let mut members = vec![Member {
            name: inf_name.to_string(),
            kind: MemberKind::Flat,
            hash: authenticode::flat_hash(&inf_bytes),
        }];
        for name in &facts.source_files {
            let bytes = std::fs::read(dir.join(name)).map_err(|e| format!("{name} (listed in the INF): {e}"))?;
            let member = if bytes.starts_with(b"MZ") {
                Member { name: name.clone(), kind: MemberKind::PeImage, hash: authenticode::pe_image_hash(&bytes)? }
            } else {
                Member { name: name.clone(), kind: MemberKind::Flat, hash: authenticode::flat_hash(&bytes) }
            };
            members.push(member);
        }
        Ok(Catalog {
            members,
            os_attr: OS_ATTR_WINDOWS_10.to_string(),
            os: os.to_string(),
            hardware_ids: facts.hardware_ids,
            made_at,
        })
    }

    /// The certificate trust list.
    pub fn trust_list(&self) -> Result<CertificateTrustList, Error> {
        let mut members = self.members.clone();
        members.sort_by_key(|m| m.hash);
        let mut subjects = Vec::new();
        for member in &members {
            let member_info = Any::new(Tag::ContextSpecific { constructed: false, number: TagNumber::N2 }, [])?;
            let attributes = vec![
                attribute(oid::CAT_MEMBERINFO2, member_info)?,
                attribute(oid::CAT_NAMEVALUE, Any::encode_from(&name_value("File", &member.name)?)?)?,
                attribute(oid::CAT_NAMEVALUE, Any::encode_from(&name_value("OSAttr", &self.os_attr)?)?)?,
                attribute(oid::SPC_INDIRECT_DATA, Any::encode_from(&indirect_data(member)?)?)?,
            ];
            subjects.push(TrustedSubject {
                subject_identifier: OctetString::new(member.hash)?,
                subject_attributes: SetOfVec::try_from(attributes)?,
            });
        }
        let mut extensions = vec![("OS".to_string(), self.os.clone())];
        for (i, id) in self.hardware_ids.iter().enumerate() {
            extensions.push((format!("HWID{}", i + 1), id.clone()));
        }
        let extensions = extensions
            .iter()
            .map(|(name, value)| {
                Ok(Extension {
                    extn_id: oid::CAT_NAMEVALUE,
                    critical: false,
                    extn_value: OctetString::new(name_value(name, value)?.to_der()?)?,
                })
            })
            .collect::<Result<Vec<_>, Error>>()?;
        // A stable list identifier: derived from the member tags.
        let tags: Vec<u8> = members.iter().flat_map(|m| m.hash).collect();
        let list_identifier = authenticode::flat_hash(&tags)[..16].to_vec();
        let when = der::DateTime::from_unix_duration(std::time::Duration::from_secs(self.made_at))?;
        Ok(CertificateTrustList {
            subject_usage: vec![oid::CATALOG_LIST],
            list_identifier: Some(OctetString::new(list_identifier)?),
            this_update: UtcTime::from_date_time(when)?,
            subject_algorithm: AlgorithmIdentifierOwned {
                oid: oid::CATALOG_LIST_MEMBER2,
                parameters: Some(Any::null()),
            },
            trusted_subjects: subjects,
            extensions: Some(extensions),
        })
    }

    /// The unsigned catalog: PKCS#7 `SignedData` (version 1, no digest
    /// algorithms, no signers) around the trust list, DER.
    pub fn to_unsigned_der(&self) -> Result<Vec<u8>, Error> {
        let signed = SignedData {
            version: cms::content_info::CmsVersion::V1,
            digest_algorithms: SetOfVec::new(),
            encap_content_info: EncapsulatedContentInfo {
                econtent_type: oid::CTL,
                econtent: Some(Any::encode_from(&self.trust_list()?)?),
            },
            certificates: None,
            crls: None,
            signer_infos: SignerInfos(SetOfVec::new()),
        };
        let info = ContentInfo { content_type: oid::SIGNED_DATA, content: Any::encode_from(&signed)? };
        Ok(info.to_der()?)
    }
}

/// A member as read back from a catalog.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ListedMember {
    /// The member tag.
    pub tag: Vec<u8>,
    /// The `File` attribute.
    pub file: Option<String>,
    /// The `OSAttr` attribute.
    pub os_attr: Option<String>,
    /// How the hash was taken, from the indirect data's type.
    pub kind: Option<MemberKind>,
    /// The hash algorithm of the indirect data.
    pub digest_algorithm: Option<der::asn1::ObjectIdentifier>,
    /// The hash of the indirect data.
    pub digest: Option<Vec<u8>>,
}

/// What a catalog holds, read back.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Listing {
    /// The content type of the signed data (`szOID_CTL` for a catalog).
    pub content_type: der::asn1::ObjectIdentifier,
    /// The trust list's subject algorithm.
    pub subject_algorithm: der::asn1::ObjectIdentifier,
    /// The members.
    pub members: Vec<ListedMember>,
    /// The catalog's own name/value attributes, in order.
    pub attributes: Vec<(String, String)>,
    /// The certificates in the signed data, DER.
    pub certificates: Vec<Vec<u8>>,
    /// How many signers signed it.
    pub signers: usize,
}

fn decode_name_value(der_bytes: &[u8]) -> Result<(String, String), Error> {
    let nv = CatNameValue::from_der(der_bytes)?;
    let name = String::from_utf16_lossy(&nv.tag.codepoints().collect::<Vec<u16>>());
    Ok((name, from_utf16z(nv.value.as_bytes())))
}

/// Parses a catalog (signed or not).
pub fn read(catalog: &[u8]) -> Result<Listing, Error> {
    let info = ContentInfo::from_der(catalog)?;
    if info.content_type != oid::SIGNED_DATA {
        return Err(format!("content type {} is not signedData", info.content_type).into());
    }
    let signed: SignedData = info.content.decode_as()?;
    let content = signed.encap_content_info.econtent.as_ref().ok_or("no encapsulated content")?;
    let ctl: CertificateTrustList = content.decode_as()?;
    let mut members = Vec::new();
    for subject in &ctl.trusted_subjects {
        let mut member = ListedMember {
            tag: subject.subject_identifier.as_bytes().to_vec(),
            file: None,
            os_attr: None,
            kind: None,
            digest_algorithm: None,
            digest: None,
        };
        for attribute in subject.subject_attributes.iter() {
            for value in attribute.values.iter() {
                if attribute.oid == oid::CAT_NAMEVALUE {
                    let (name, text) = decode_name_value(&value.to_der()?)?;
                    match name.as_str() {
                        "File" => member.file = Some(text),
                        "OSAttr" => member.os_attr = Some(text),
                        _ => {}
                    }
                } else if attribute.oid == oid::SPC_INDIRECT_DATA {
                    let data: SpcIndirectDataContent = value.decode_as()?;
                    member.kind = match data.data.value_type {
                        t if t == oid::SPC_PE_IMAGE_DATA => Some(MemberKind::PeImage),
                        t if t == oid::SPC_CAB_DATA => Some(MemberKind::Flat),
                        _ => None,
                    };
                    member.digest_algorithm = Some(data.message_digest.digest_algorithm.oid);
                    member.digest = Some(data.message_digest.digest.as_bytes().to_vec());
                }
            }
        }
        members.push(member);
    }
    let attributes = ctl
        .extensions
        .iter()
        .flatten()
        .filter(|e| e.extn_id == oid::CAT_NAMEVALUE)
        .map(|e| decode_name_value(e.extn_value.as_bytes()))
        .collect::<Result<Vec<_>, Error>>()?;
    let certificates = signed
        .certificates
        .iter()
        .flat_map(|CertificateSet(set)| set.iter())
        .filter_map(|choice| match choice {
            cms::cert::CertificateChoices::Certificate(cert) => Some(cert.to_der()),
            _ => None,
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Listing {
        content_type: signed.encap_content_info.econtent_type,
        subject_algorithm: ctl.subject_algorithm.oid,
        members,
        attributes,
        certificates,
        signers: signed.signer_infos.0.len(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Catalog {
        Catalog {
            members: vec![
                Member { name: "portwatch.inf".into(), kind: MemberKind::Flat, hash: [0x22; 32] },
                Member { name: "portwatch.sys".into(), kind: MemberKind::PeImage, hash: [0x11; 32] },
            ],
            os_attr: OS_ATTR_WINDOWS_10.into(),
            os: "_v100_X64_Vb".into(),
            hardware_ids: vec!["pw_portwatch".into()],
            made_at: 1_800_000_000,
        }
    }

    #[test]
    fn an_unsigned_catalog_reads_back() {
        let listing = read(&sample().to_unsigned_der().expect("encodes")).expect("decodes");
        assert_eq!(listing.content_type, oid::CTL);
        assert_eq!(listing.subject_algorithm, oid::CATALOG_LIST_MEMBER2);
        assert_eq!(listing.signers, 0);
        assert!(listing.certificates.is_empty());
        assert_eq!(
            listing.attributes,
            [("OS".to_string(), "_v100_X64_Vb".to_string()), ("HWID1".to_string(), "pw_portwatch".to_string())]
        );
        // Sorted by tag: the .sys (0x11…) first.
        let sys = &listing.members[0];
        assert_eq!(sys.tag, [0x11; 32]);
        assert_eq!(sys.file.as_deref(), Some("portwatch.sys"));
        assert_eq!(sys.os_attr.as_deref(), Some("2:10.0"));
        assert_eq!(sys.kind, Some(MemberKind::PeImage));
        assert_eq!(sys.digest_algorithm, Some(oid::SHA256));
        assert_eq!(sys.digest.as_deref(), Some(&[0x11; 32][..]));
        let inf = &listing.members[1];
        assert_eq!(inf.file.as_deref(), Some("portwatch.inf"));
        assert_eq!(inf.kind, Some(MemberKind::Flat));
    }

    #[test]
    fn encoding_is_deterministic() {
        assert_eq!(sample().to_unsigned_der().unwrap(), sample().to_unsigned_der().unwrap());
    }

    #[test]
    fn name_values_are_utf16_with_a_nul() {
        assert_eq!(utf16z("OS"), [b'O', 0, b'S', 0, 0, 0]);
        assert_eq!(from_utf16z(&utf16z("2:10.0")), "2:10.0");
    }

    #[test]
    fn builds_without_an_inf2cat_code_are_refused() {
        assert_eq!(inf2cat_os_for_build(19041), Some(("10_VB_X64", "_v100_X64_Vb")));
        assert_eq!(inf2cat_os_for_build(19040), None);
    }
}
