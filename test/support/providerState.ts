import { createHash } from "crypto";

/**
 * What the tls and random providers would compute, for resources under mocks: PEM-shaped
 * keys, certificates and requests, and passwords, each derived from the resource's name so a
 * test can tell them apart (and find them where they must not appear).
 */
export function providerState(type: string, name: string, inputs: Record<string, any> = {}): Record<string, any> | undefined {
    const body = createHash("sha256").update(name).digest("base64");
    switch (type) {
        case "tls:index/privateKey:PrivateKey":
            return { privateKeyPem: `-----BEGIN PRIVATE KEY-----\nKEY${body}\n-----END PRIVATE KEY-----\n`, publicKeyPem: `-----BEGIN PUBLIC KEY-----\n${body}\n-----END PUBLIC KEY-----\n` };
        case "tls:index/selfSignedCert:SelfSignedCert":
        case "tls:index/locallySignedCert:LocallySignedCert":
            return { certPem: `-----BEGIN CERTIFICATE-----\nCERT${body}\n-----END CERTIFICATE-----\n` };
        case "tls:index/certRequest:CertRequest":
            return { certRequestPem: `-----BEGIN CERTIFICATE REQUEST-----\n${body}\n-----END CERTIFICATE REQUEST-----\n` };
        case "random:index/randomPassword:RandomPassword":
            return { result: createHash("sha256").update(`password ${name}`).digest("hex") };
        // The GitLab provider (components/gitops/gitlab/provider.ts), group 42 = platform.
        case "gitlab:index/project:Project": {
            const full = `platform/${String(inputs.path)}`;
            return { id: "4711", pathWithNamespace: full, httpUrlToRepo: `https://gitlab.example.com/${full}.git`, webUrl: `https://gitlab.example.com/${full}` };
        }
        case "gitlab:index/projectDeployToken:ProjectDeployToken":
            return { token: `gldt-${body}`, username: "gitlab+deploy-token-7", expired: false, revoked: false };
        case "gitlab:index/projectAccessToken:ProjectAccessToken":
            return { token: `glpat-${body}`, expiresAt: "2027-05-25", active: true, userId: 99 };
        case "gitlab:index/projectHook:ProjectHook":
            return { hookId: 1234 };
        default:
            return undefined;
    }
}

/** The marker every mocked private key and password carries, to assert they appear nowhere in clear. */
export const MOCK_KEY_MARKER = "-----BEGIN PRIVATE KEY-----\nKEY";
