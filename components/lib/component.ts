import * as pulumi from "@pulumi/pulumi";

/**
 * A component whose pure plan is made before anything is registered: the subclass passes
 * `planX(args)` to `super`, so invalid arguments throw before the component or any of its
 * resources exist.
 */
export abstract class PlannedComponent<Plan> extends pulumi.ComponentResource {
    /** What the component registers, computed from its arguments alone. */
    public readonly plan: Plan;

    protected constructor(type: string, name: string, plan: Plan, opts?: pulumi.ComponentResourceOptions) {
        super(type, name, {}, opts);
        this.plan = plan;
    }
}
