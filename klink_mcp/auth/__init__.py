"""Who may use the HTTP server: OAuth 2.1 resource server, approval-page sign-in, four-eyes.

- `principal`       - scopes, the authenticated `Principal`, `require_scope`, `scope_for_effects`;
- `resource_server` - JWT access tokens against the IdP's JWKS, the auth gate, RFC 9728 metadata;
- `oidc`            - OpenID Connect code flow with PKCE for the approval page, `current_person`;
- `four_eyes`       - `may_approve`, the pure four-eyes rule.

This file imports nothing so that `import klink_mcp.auth.principal` stays cheap; nothing in this
package imports the tool layer or the K-LINK client, and no token is ever sent to K-LINK.
"""
