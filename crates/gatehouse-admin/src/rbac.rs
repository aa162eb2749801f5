//! Role-based access control for the control plane, in one place: the roles, the
//! permissions, one matrix from role to permissions, and one check that also scopes by
//! organization. Every admin route names the permission it needs.

use gatehouse_core::{Denial, DenyCode, OrgId};

/// DESIGN.md's four roles, lowest to highest.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Role {
    Viewer,
    Member,
    OrgAdmin,
    PlatformAdmin,
}

impl Role {
    pub const ALL: [Role; 4] = [Role::Viewer, Role::Member, Role::OrgAdmin, Role::PlatformAdmin];

    pub const fn as_str(self) -> &'static str {
        match self {
            Role::Viewer => "viewer",
            Role::Member => "member",
            Role::OrgAdmin => "org_admin",
            Role::PlatformAdmin => "platform_admin",
        }
    }

    /// Unknown role names are refused, never mapped to a default.
    pub fn parse(s: &str) -> Option<Role> {
        Role::ALL.into_iter().find(|r| r.as_str() == s)
    }
}

/// What an operator may do. Adding one forces a decision for every role in [`allows`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Permission {
    /// Create organizations, list all of them: platform scope.
    OrgCreate,
    OrgRead,
    OrgUpdate,
    ProjectRead,
    ProjectWrite,
    UserRead,
    UserWrite,
    /// Grant and revoke roles in an org.
    MembershipWrite,
    KeyRead,
    /// Create, rotate and revoke keys in projects the operator belongs to.
    KeyWriteOwn,
    /// Create, rotate and revoke any key of the org.
    KeyWriteAny,
    AuditRead,
    UsageRead,
}

impl Permission {
    pub const ALL: [Permission; 13] = [
        Permission::OrgCreate,
        Permission::OrgRead,
        Permission::OrgUpdate,
        Permission::ProjectRead,
        Permission::ProjectWrite,
        Permission::UserRead,
        Permission::UserWrite,
        Permission::MembershipWrite,
        Permission::KeyRead,
        Permission::KeyWriteOwn,
        Permission::KeyWriteAny,
        Permission::AuditRead,
        Permission::UsageRead,
    ];

    pub const fn as_str(self) -> &'static str {
        match self {
            Permission::OrgCreate => "org.create",
            Permission::OrgRead => "org.read",
            Permission::OrgUpdate => "org.update",
            Permission::ProjectRead => "project.read",
            Permission::ProjectWrite => "project.write",
            Permission::UserRead => "user.read",
            Permission::UserWrite => "user.write",
            Permission::MembershipWrite => "membership.write",
            Permission::KeyRead => "key.read",
            Permission::KeyWriteOwn => "key.write_own",
            Permission::KeyWriteAny => "key.write_any",
            Permission::AuditRead => "audit.read",
            Permission::UsageRead => "usage.read",
        }
    }
}

/// THE matrix. Explicit per role and permission: no wildcard arm.
pub const fn allows(role: Role, p: Permission) -> bool {
    use Permission::*;
    match role {
        Role::PlatformAdmin => true,
        Role::OrgAdmin => match p {
            OrgCreate => false,
            OrgRead | OrgUpdate | ProjectRead | ProjectWrite | UserRead | UserWrite | MembershipWrite | KeyRead
            | KeyWriteOwn | KeyWriteAny | AuditRead | UsageRead => true,
        },
        Role::Member => match p {
            OrgRead | ProjectRead | KeyRead | KeyWriteOwn | UsageRead => true,
            OrgCreate | OrgUpdate | ProjectWrite | UserRead | UserWrite | MembershipWrite | KeyWriteAny | AuditRead => {
                false
            }
        },
        Role::Viewer => match p {
            OrgRead | ProjectRead | UserRead | KeyRead | AuditRead | UsageRead => true,
            OrgCreate | OrgUpdate | ProjectWrite | UserWrite | MembershipWrite | KeyWriteOwn | KeyWriteAny => false,
        },
    }
}

/// An authenticated operator of the control plane.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Operator {
    /// An admin token's id, or `oidc:<issuer>:<subject>` for a federated operator.
    pub token_id: String,
    pub role: Role,
    /// The org the operator acts in; `None` only for platform admins.
    pub org: Option<OrgId>,
    /// The member the operator's token acts for, if it was minted for one.
    pub user: Option<gatehouse_core::UserId>,
}

/// The audit actor for an operator.
impl Operator {
    pub fn actor(&self) -> gatehouse_audit::Actor {
        actor_of(&self.token_id)
    }
}

/// The prefix of a federated operator's id, `oidc:<issuer>:<subject>` (an admin token's id is
/// the token's own).
const FEDERATED: &str = "oidc:";

/// The id of an operator that a federated identity stands for.
pub fn federated_id(issuer: &str, subject: &str) -> String {
    format!("{FEDERATED}{issuer}:{subject}")
}

/// The admin token an operator's id names, if it is not a federated identity.
pub fn admin_token_of(id: &str) -> Option<&str> {
    (!id.starts_with(FEDERATED)).then_some(id)
}

/// The issuer (by our name for it) of a federated operator's id.
pub fn federated_issuer(id: &str) -> Option<&str> {
    Some(id.strip_prefix(FEDERATED)?.split_once(':')?.0)
}

/// The audit actor for an operator's id.
pub fn actor_of(id: &str) -> gatehouse_audit::Actor {
    match id.strip_prefix(FEDERATED) {
        Some(who) => gatehouse_audit::Actor::Federated(who.to_owned()),
        None => gatehouse_audit::Actor::AdminToken(id.to_owned()),
    }
}

/// The one check. `target` is the org that owns the object (or `None` for platform-scope
/// operations). Another org's objects answer exactly like missing ones: 404.
pub fn check(op: &Operator, p: Permission, target: Option<OrgId>) -> Result<(), Denial> {
    if op.role == Role::PlatformAdmin {
        return Ok(());
    }
    match target {
        Some(org) if op.org != Some(org) => Err(Denial::new(DenyCode::NotFound)),
        None if p == Permission::OrgCreate || op.org.is_none() => Err(Denial::new(DenyCode::PermissionDenied)),
        _ if allows(op.role, p) => Ok(()),
        _ => Err(Denial::new(DenyCode::PermissionDenied)),
    }
}

/// Whether an operator may grant `role` to someone: never above their own role, and only
/// platform admins make platform admins.
pub fn may_grant(op: &Operator, role: Role) -> bool {
    match op.role {
        Role::PlatformAdmin => true,
        Role::OrgAdmin => role <= Role::OrgAdmin,
        Role::Member | Role::Viewer => false,
    }
}

/// The matrix as a Markdown table, for docs/ADMIN-API.md (a test keeps the doc in step).
pub fn matrix_markdown() -> String {
    let mut out = String::from("| permission |");
    for r in Role::ALL {
        out.push_str(&format!(" {} |", r.as_str()));
    }
    out.push_str("\n| --- |");
    for _ in Role::ALL {
        out.push_str(" :-: |");
    }
    for p in Permission::ALL {
        out.push_str(&format!("\n| `{}` |", p.as_str()));
        for r in Role::ALL {
            out.push_str(if allows(r, p) { " yes |" } else { " — |" });
        }
    }
    out.push('\n');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_documented_matrix_is_the_enforced_one() {
        let doc = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/ADMIN-API.md")).unwrap();
        let table = matrix_markdown();
        assert!(doc.contains(&table), "docs/ADMIN-API.md must contain the generated matrix:\n{table}");
    }

    fn op(role: Role, org: Option<OrgId>) -> Operator {
        Operator { token_id: "t".into(), role, org, user: None }
    }

    #[test]
    fn roles_round_trip_and_unknown_roles_are_refused() {
        for r in Role::ALL {
            assert_eq!(Role::parse(r.as_str()), Some(r));
        }
        assert_eq!(Role::parse("admin"), None);
        assert_eq!(Role::parse("PLATFORM_ADMIN"), None);
    }

    #[test]
    fn higher_roles_include_lower_ones_except_where_meant() {
        for p in Permission::ALL {
            if allows(Role::Member, p) && p != Permission::KeyWriteOwn {
                assert!(allows(Role::OrgAdmin, p), "{p:?}");
            }
            if allows(Role::OrgAdmin, p) {
                assert!(allows(Role::PlatformAdmin, p), "{p:?}");
            }
        }
        // a viewer never mutates
        for p in [Permission::OrgUpdate, Permission::ProjectWrite, Permission::UserWrite, Permission::MembershipWrite] {
            assert!(!allows(Role::Viewer, p));
        }
    }

    #[test]
    fn other_orgs_are_not_found_and_missing_rights_are_forbidden() {
        let (a, b) = (OrgId::generate(), OrgId::generate());
        let admin_a = op(Role::OrgAdmin, Some(a));
        assert!(check(&admin_a, Permission::KeyWriteAny, Some(a)).is_ok());
        assert_eq!(check(&admin_a, Permission::KeyRead, Some(b)).unwrap_err().code, DenyCode::NotFound);
        assert_eq!(check(&admin_a, Permission::OrgCreate, None).unwrap_err().code, DenyCode::PermissionDenied);
        let viewer_a = op(Role::Viewer, Some(a));
        assert_eq!(check(&viewer_a, Permission::KeyWriteOwn, Some(a)).unwrap_err().code, DenyCode::PermissionDenied);
        assert_eq!(check(&viewer_a, Permission::KeyWriteOwn, Some(b)).unwrap_err().code, DenyCode::NotFound);
        let platform = op(Role::PlatformAdmin, None);
        for p in Permission::ALL {
            assert!(check(&platform, p, Some(b)).is_ok());
            assert!(check(&platform, p, None).is_ok());
        }
    }

    #[test]
    fn nobody_grants_above_their_own_role() {
        let a = Some(OrgId::generate());
        assert!(!may_grant(&op(Role::OrgAdmin, a), Role::PlatformAdmin));
        assert!(may_grant(&op(Role::OrgAdmin, a), Role::OrgAdmin));
        assert!(!may_grant(&op(Role::Member, a), Role::Viewer));
        assert!(may_grant(&op(Role::PlatformAdmin, None), Role::PlatformAdmin));
    }
}
