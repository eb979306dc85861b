/* The console script: see the console helper. */
