/**
 * What a sample's target is: one class (`classify`), a set of labels (`multilabel`) or numbers
 * (`regress`). A manifest's columns decide it (see `openManifest`); folders and IDX are `classify`.
 * Its own file, with no Node types: the browser bundle includes it (through `model/metadata.ts`).
 */
export const TASKS = ['classify', 'multilabel', 'regress'] as const;
export type Task = (typeof TASKS)[number];
