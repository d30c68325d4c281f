//! Task generators: one pure planner per task type.
