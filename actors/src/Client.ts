import { Actors } from "@sam/bus"

/** The actor client is part of the contract: it lives in bus (`Actors` there), and is the same here. */
export const { ask, send } = Actors
