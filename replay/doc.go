// Package replay pushes a recorded feature log through streamfeat and
// reports the drift it shows, in event time.
//
// # Design
//
// A Source reads one file, CSV with a header row, newline-delimited JSON or
// Parquet, optionally gzip-compressed, and yields one streamfeat.Event per
// row. A Mapping says which columns make the entity id (several columns are
// joined with EntitySeparator), which holds the time and which hold the
// features. Sources stream: they hold one row, or one Parquet read buffer,
// at a time, so a file of any size replays in bounded memory.
//
// A row that cannot become an event (a bad timestamp, a non-numeric value,
// a missing column) comes back from Source.Read as a *RowError that names the
// line or row; the caller counts it and reads on. Only an I/O or format error
// that leaves the rest of the file unreadable ends a Source.
//
// Replayer drives a Source into a Backend: the engine in this process
// (Local) or a server. It groups rows into microbatches, ingests them with
// wait-for-capacity so that nothing is dropped for overload, and hands each
// entity to a Detector. Events must come in time order for the results to
// mean anything; the event-time clock makes the newest event "now".
//
// # Alerts
//
// Every CheckEvery of event time the Replayer cuts the batch at the
// boundary, ingests it, and asks the Detector to check drift for every entity
// seen since the previous check and for the population, per feature. An
// alert fires when an (entity, feature) pair is drifted and was not drifted
// at its previous check, so a lasting drift is reported once; after the pair
// is seen normal again it may fire again. The Detector keeps state only for
// pairs that are drifted now, so its memory follows the drift, not the
// number of entities.
//
// Because checks happen at fixed points of event time, after the same
// batches, the same input gives the same alerts whether the Backend is the
// engine in this process or a server that runs the event-time clock.
package replay
