/**
 * The name patterns shared by the config schema and the components (the shell scripts check the
 * same ones on the node, in components/lib/scripts/common.sh).
 */

/**
 * A DNS label (RFC 1123): lowercase letters, digits and '-', 1 to 63 characters, neither first nor
 * last a '-'. Node names, Kubernetes object names and label values.
 */
export const DNS_LABEL = /^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$/;

/** A DNS name: DNS labels joined by '.', at most 253 characters. */
export const DNS_NAME = /^(?=.{1,253}$)[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?(\.[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)*$/;

/** A host name on the internet: DNS labels ending in an alphabetic top-level domain. */
export const HOST_NAME = /^(?=.{1,253}$)([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z]{2,63}$/;
