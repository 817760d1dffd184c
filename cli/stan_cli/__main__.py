from stan_cli.main import main

main()
