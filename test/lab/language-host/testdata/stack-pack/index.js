// Reports, as one advisory violation, what the pack process was started with: the values
// a language host passes in PULUMI_NODEJS_* and PULUMI_CONFIG. Config values are not
// shown (they may be secrets), only how many keys there are.
const pulumi = require("@pulumi/pulumi");
const { PolicyPack } = require("@pulumi/policy");

new PolicyPack("language-host-check", {
    policies: [
        {
            name: "stack-seen-by-pack",
            description: "Reports the stack, project, dry-run flag and number of config keys the pack sees.",
            enforcementLevel: "advisory",
            validateStack: (_args, reportViolation) => {
                const config = JSON.parse(process.env.PULUMI_CONFIG || "{}");
                reportViolation(
                    `stack=${pulumi.getStack()} project=${pulumi.getProject()} ` +
                        `dryRun=${process.env.PULUMI_NODEJS_DRY_RUN} configKeys=${Object.keys(config).length} ` +
                        `cwd=${process.cwd()}`,
                );
            },
        },
    ],
});
