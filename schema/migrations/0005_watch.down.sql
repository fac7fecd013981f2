DROP TABLE watch_sweeps;
DROP TABLE machine_watch;
