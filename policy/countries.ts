/**
 * The countries of the European Economic Area (the 27 EU member states, Iceland, Liechtenstein,
 * Norway) and Switzerland (EFTA), as ISO 3166-1 alpha-2 codes. Greece is `GR` (ISO), not the EU's
 * `EL`. `policy/config.eea.json` lists the same codes.
 */
export const EEA_AND_EFTA: readonly string[] = [
    "AT", "BE", "BG", "HR", "CY", "CZ", "DK", "EE", "FI", "FR", "DE", "GR", "HU", "IE", "IT", "LV", "LT", "LU", "MT", "NL", "PL",
    "PT", "RO", "SK", "SI", "ES", "SE",
    "IS", "LI", "NO",
    "CH",
];
