from nbp.cli import main

raise SystemExit(main())
