from earwitness.cli import main

raise SystemExit(main())
