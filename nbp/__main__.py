from nbp.cli import main

# The guard matters: worker processes started with "spawn" (the demo's training lanes) import this
# module again as "__mp_main__", and must not run the command line a second time.
if __name__ == "__main__":
    raise SystemExit(main())
