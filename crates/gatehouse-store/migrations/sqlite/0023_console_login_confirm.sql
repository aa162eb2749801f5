-- A confirmation at the identity provider (issue #22: re-authentication for sensitive
-- actions by people who sign in with SSO): the console session that asked for it. The
-- callback arrives on the provider's cross-site redirect, which carries no SameSite=Strict
-- session cookie, so the session is named here, bound to the browser by the login cookie.
-- NULL for a sign-in.
ALTER TABLE console_logins ADD COLUMN session_id TEXT;
