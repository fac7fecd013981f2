package workflows

import "github.com/gpuflow/gpuflow/activities"

// a is the workflows' only link to the activity code: method values on a nil
// pointer give the registered activity names and their types.
var a *activities.Activities
