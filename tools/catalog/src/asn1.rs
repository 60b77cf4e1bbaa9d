//! The ASN.1 types of a Microsoft security catalog, declared with `der`'s
//! derive macros (the encoder and decoder are `der`'s).
//!
//! A catalog is a PKCS#7 `SignedData` whose encapsulated content (type
//! `szOID_CTL`) is a certificate trust list used as a list of file hashes:
//!
//! ```text
//! CertificateTrustList ::= SEQUENCE {
//!     subjectUsage      SEQUENCE OF OBJECT IDENTIFIER,  -- { szOID_CATALOG_LIST }
//!     listIdentifier    OCTET STRING OPTIONAL,
//!     thisUpdate        UTCTime,
//!     subjectAlgorithm  AlgorithmIdentifier,            -- szOID_CATALOG_LIST_MEMBER2, NULL
//!     trustedSubjects   SEQUENCE OF TrustedSubject,     -- the members
//!     extensions        [0] EXPLICIT SEQUENCE OF Extension OPTIONAL  -- catalog attributes
//! }
//! TrustedSubject ::= SEQUENCE {
//!     subjectIdentifier OCTET STRING,                   -- the member tag: the file's hash
//!     subjectAttributes SET OF Attribute
//! }
//! ```
//!
//! Member attributes are `CAT_NAMEVALUE` name/value pairs ("File",
//! "OSAttr"), `CAT_MEMBERINFO2` and `SPC_INDIRECT_DATA` (the Authenticode
//! `SpcIndirectDataContent` holding the hash). Catalog attributes are
//! extensions whose value is a DER `CatNameValue` ("OS", "HWID1").

use der::asn1::{Any, BitString, BmpString, Ia5String, ObjectIdentifier, OctetString, SetOfVec, UtcTime};
use der::{Choice, Sequence};
use x509_cert::attr::Attribute;
use x509_cert::ext::Extension;
use x509_cert::spki::AlgorithmIdentifierOwned;

/// The certificate trust list that is the content of a catalog.
#[derive(Clone, Debug, PartialEq, Eq, Sequence)]
pub struct CertificateTrustList {
    /// `{ szOID_CATALOG_LIST }`.
    pub subject_usage: Vec<ObjectIdentifier>,
    /// A 16-byte list identifier.
    pub list_identifier: Option<OctetString>,
    /// When the catalog was made.
    pub this_update: UtcTime,
    /// `szOID_CATALOG_LIST_MEMBER2` (SHA-256 member tags), NULL parameters.
    pub subject_algorithm: AlgorithmIdentifierOwned,
    /// The members, sorted by their tag.
    pub trusted_subjects: Vec<TrustedSubject>,
    /// The catalog's own attributes.
    #[asn1(context_specific = "0", tag_mode = "EXPLICIT", optional = "true")]
    pub extensions: Option<Vec<Extension>>,
}

/// One catalog member.
#[derive(Clone, Debug, PartialEq, Eq, Sequence)]
pub struct TrustedSubject {
    /// The member tag: the member's SHA-256 hash.
    pub subject_identifier: OctetString,
    /// The member's attributes.
    pub subject_attributes: SetOfVec<Attribute>,
}

/// A catalog name/value attribute (`CAT_NAMEVALUE_OBJID`).
#[derive(Clone, Debug, PartialEq, Eq, Sequence)]
pub struct CatNameValue {
    /// The attribute's name.
    pub tag: BmpString,
    /// `CRYPTCAT_ATTR_*` flags.
    pub flags: u32,
    /// The value: UTF-16LE with a terminating NUL.
    pub value: OctetString,
}

/// Authenticode's `SpcIndirectDataContent`: what the hash is of, and the hash.
#[derive(Clone, Debug, PartialEq, Eq, Sequence)]
pub struct SpcIndirectDataContent {
    /// The subject type (`SPC_PE_IMAGE_DATA` or `SPC_CAB_DATA`) and its data.
    pub data: SpcAttributeTypeAndOptionalValue,
    /// The hash.
    pub message_digest: DigestInfo,
}

/// `SpcAttributeTypeAndOptionalValue`.
#[derive(Clone, Debug, PartialEq, Eq, Sequence)]
pub struct SpcAttributeTypeAndOptionalValue {
    /// The subject type.
    pub value_type: ObjectIdentifier,
    /// Type-specific data.
    pub value: Option<Any>,
}

/// PKCS#1 `DigestInfo`.
#[derive(Clone, Debug, PartialEq, Eq, Sequence)]
pub struct DigestInfo {
    /// The hash algorithm.
    pub digest_algorithm: AlgorithmIdentifierOwned,
    /// The hash.
    pub digest: OctetString,
}

/// `SpcPeImageData`: the data of a PE member.
#[derive(Clone, Debug, PartialEq, Eq, Sequence)]
pub struct SpcPeImageData {
    /// Which optional parts of the image the hash covers.
    pub flags: BitString,
    /// An (empty) link to the file.
    #[asn1(context_specific = "0", tag_mode = "EXPLICIT", optional = "true")]
    pub file: Option<SpcLink>,
}

/// `SpcLink`.
#[derive(Clone, Debug, PartialEq, Eq, Choice)]
pub enum SpcLink {
    /// A URL.
    #[asn1(context_specific = "0", tag_mode = "IMPLICIT")]
    Url(Ia5String),
    /// A file name.
    #[asn1(context_specific = "2", tag_mode = "EXPLICIT", constructed = "true")]
    File(SpcString),
}

/// `SpcString`.
#[derive(Clone, Debug, PartialEq, Eq, Choice)]
pub enum SpcString {
    /// UCS-2.
    #[asn1(context_specific = "0", tag_mode = "IMPLICIT")]
    Unicode(BmpString),
    /// ASCII.
    #[asn1(context_specific = "1", tag_mode = "IMPLICIT")]
    Ascii(Ia5String),
}
